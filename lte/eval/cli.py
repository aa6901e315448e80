"""`lte eval`: KnowEdit metrics for LTE and its baselines; `lte eval report DIR` reprints tables."""

from __future__ import annotations

import argparse

from lte.errors import UserError


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _sizes(value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes wants integers like 10,100; got {value!r}") from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate LTE and baselines (KnowEdit metrics, batch/sequential protocols)",
        description="Runs every configured method x protocol x size and writes results.json, "
                    "results.md and metric_*.png to --out. `lte eval report DIR` prints the "
                    "tables of an earlier run.")
    p.add_argument("--config", help="YAML preset, e.g. configs/eval/tiny.yaml")
    p.add_argument("--model", help="aligned checkpoint folder or hub id (model.name_or_path)")
    p.add_argument("--base-model", help="model before alignment, for the prompt-only baseline")
    p.add_argument("--data", nargs="+", metavar="FILE", help="edit files (any lte.data format)")
    p.add_argument("--protocol", type=_csv, help="single, batch, sequential (comma-separated)")
    p.add_argument("--methods", type=_csv,
                   help="lte, no-edit, prompt-only, gold-context, ft-l (comma-separated)")
    p.add_argument("--sizes", type=_sizes, help="numbers of edits N, e.g. 10,100,1000")
    p.add_argument("--out", help="output folder")
    p.add_argument("--serve", metavar="URL",
                   help="run the methods through a live `lte serve` at URL (backend=serve; "
                        "write token from $LTE_API_TOKEN)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any EvalConfig field, e.g. --set ftl.steps=10")
    p.set_defaults(func=run)
    sub = p.add_subparsers(dest="eval_command", metavar="{report}")
    r = sub.add_parser("report", help="print the tables of an earlier `lte eval --out DIR`")
    r.add_argument("dir", help="the --out folder of an evaluation")
    r.set_defaults(func=report)


def build_eval_config(args):
    from lte.config import EvalConfig, load_config

    overrides = list(args.overrides)
    if args.model:
        overrides.append(f"model.name_or_path={args.model}")
    if args.base_model:
        overrides.append(f"base_model={args.base_model}")
    if args.out:
        overrides.append(f"out={args.out}")
    if getattr(args, "serve", None):
        overrides += ["backend=serve", f"serve_url={args.serve}"]
    cfg = load_config(EvalConfig, args.config, overrides)
    # Lists straight from flags: YAML-parsing file names or method names could retype them.
    from dataclasses import replace

    changes = {}
    if args.data:
        changes["data"] = list(args.data)
    if args.protocol:
        changes["protocols"] = args.protocol
    if args.methods:
        changes["methods"] = args.methods
    if args.sizes:
        changes["sizes"] = args.sizes
    return replace(cfg, **changes) if changes else cfg


def run(args) -> int:
    from lte.config import format_config

    cfg = build_eval_config(args)
    print(format_config(cfg))
    from lte.eval.report import render_markdown
    from lte.eval.run import run_eval

    results = run_eval(cfg)
    print(render_markdown(results))
    print(f"eval: wrote {cfg.out}/results.json, results.md and metric_*.png")
    return 0


def report(args) -> int:
    from lte.eval.report import load, render_markdown

    if not args.dir:
        raise UserError("give the folder of an evaluation: lte eval report DIR")
    print(render_markdown(load(args.dir)))
    return 0
