"""`lte eval`: KnowEdit metrics for LTE and its baselines; `lte eval report DIR` reprints tables."""

from __future__ import annotations

import argparse

from lte.config import EvalConfig
from lte.config.cli import add_config_args, stage_config
from lte.errors import UserError


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _sizes(value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes wants integers like 10,100; got {value!r}") from None


# flag attribute -> EvalConfig key; list flags come as typed lists, not YAML-parsed
FLAGS = {"model": "model.name_or_path", "base_model": "base_model", "data": "data",
         "protocol": "protocols", "methods": "methods", "sizes": "sizes", "out": "out",
         "serve": "serve_url"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate LTE and baselines (KnowEdit metrics, batch/sequential protocols)",
        usage="lte eval [--config YAML] [flags] [key=value ...]\n       lte eval report DIR",
        description="Runs every configured method x protocol x size and writes results.json, "
                    "results.md and metric_*.png to --out. `lte eval report DIR` prints the "
                    "tables of an earlier run.")
    p.add_argument("--model", help="aligned checkpoint folder or hub id (model.name_or_path)")
    p.add_argument("--base-model", help="model before alignment, for the prompt-only baseline")
    p.add_argument("--data", nargs="+", metavar="FILE", help="edit files (any lte.data format)")
    p.add_argument("--protocol", type=_csv, help="single, batch, sequential (comma-separated)")
    p.add_argument("--methods", type=_csv,
                   help="lte, no-edit, prompt-only, gold-context, ft-l, ft-m, ice, rome "
                        "(comma-separated)")
    p.add_argument("--sizes", type=_sizes, help="numbers of edits N, e.g. 10,100,1000")
    p.add_argument("--out", help="output folder")
    p.add_argument("--serve", metavar="URL",
                   help="run the methods through a live `lte serve` at URL (backend=serve; "
                        "write token from $LTE_API_TOKEN)")
    add_config_args(p, EvalConfig)
    p.set_defaults(func=run)


def build_eval_config(args):
    from lte.eval.registry import check_names

    if getattr(args, "serve", None):
        args.overrides = [*args.overrides, "backend=serve"]
    cfg = stage_config(args, EvalConfig, FLAGS)
    check_names(cfg)
    return cfg


def run(args) -> int:
    from lte.config import format_config

    if args.overrides[:1] == ["report"]:  # `lte eval report DIR`: a verb, not an override
        return report(args.overrides[1:])
    cfg = build_eval_config(args)
    print(format_config(cfg))
    from lte.eval.report import render_markdown
    from lte.eval.run import run_eval

    results = run_eval(cfg)
    print(render_markdown(results))
    print(f"eval: wrote {cfg.out}/results.json, results.md and metric_*.png")
    return 0


def report(rest: list[str]) -> int:
    from lte.eval.report import load, render_markdown

    if len(rest) != 1:
        raise UserError("give the folder of one evaluation: lte eval report DIR")
    print(render_markdown(load(rest[0])))
    return 0
