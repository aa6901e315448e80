"""`lte serve` (the HTTP service, foreground) and `lte bench serve --url URL` (load test)."""

from __future__ import annotations

import argparse
import os


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve the edit memory and the editing model over HTTP (Ray Serve)",
        description="Starts a local Ray instance (or joins ray_address), deploys one memory "
                    "shard per memory.shards and the Generator, and serves the HTTP API in the "
                    "foreground until Ctrl-C. Write endpoints need Authorization: Bearer "
                    "$LTE_API_TOKEN.")
    p.add_argument("--config", help="YAML preset, e.g. configs/serve/tiny.yaml")
    p.add_argument("--host", help="bind address (default 127.0.0.1; others need a token)")
    p.add_argument("--port", type=int, help="HTTP port")
    p.add_argument("--memory-dir", help="root folder of the shard memories (kept across restarts)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any ServeConfig field, e.g. --set memory.shards=4")
    p.set_defaults(func=run_serve)

    bench = _bench_subparsers(subparsers)
    b = bench.add_parser(
        "serve", help="load-test a running `lte serve` against in-process LTEEditor",
        description="N concurrent clients mixing edits and queries against --url; then the same "
                    "operations through LTEEditor in this process (the baseline) and the ratio.")
    b.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    b.add_argument("--config", help="the server's YAML preset (model and memory of the baseline)")
    b.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a ServeConfig field of the baseline")
    b.add_argument("--token", help="write token (default: $LTE_API_TOKEN)")
    b.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    b.add_argument("--ops", type=int, default=320, help="operations in the timed phase")
    b.add_argument("--edit-share", type=float, default=0.5, help="share of operations that edit")
    b.add_argument("--edits-per-op", type=int, default=1, help="edits per POST /v1/edits")
    b.add_argument("--preload", type=int, default=256, help="edits stored before timing")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--repeats", type=int, default=1,
                   help="alternate serve and baseline this many times (fresh edits each)")
    b.add_argument("--no-baseline", action="store_true", help="skip the in-process baseline")
    b.add_argument("--out", help="write the figures as JSON here")
    b.add_argument("--wandb-project", help="log throughput and latency over time to W&B "
                   "(offline without an API key)")
    b.set_defaults(func=run_bench)


def _bench_subparsers(subparsers):
    """The `lte bench` group's sub-command set, created here unless another stage made it."""
    parser = subparsers.choices.get("bench")
    if parser is None:
        parser = subparsers.add_parser("bench", help="benchmarks")
        return parser.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)


def load_serve_config(args):
    from lte.config import ServeConfig, load_config

    overrides = list(args.overrides)
    for flag, key in (("host", "host"), ("port", "port"), ("memory_dir", "memory_dir")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_config(ServeConfig, args.config, overrides)


def run_serve(args) -> int:
    from dataclasses import replace

    from lte.config import format_config
    from lte.serve.server import serve_forever

    cfg = load_serve_config(args)
    print(format_config(replace(cfg, token="<set>" if cfg.token else None)), flush=True)
    return serve_forever(cfg)


def run_bench(args) -> int:
    from lte.errors import UserError
    from lte.serve.loadtest import run_loadtest
    from lte.serve.server import TOKEN_ENV

    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        raise UserError(f"the load test writes edits; pass --token or set {TOKEN_ENV}",
                        field="token")
    for name in ("concurrency", "ops", "edits_per_op", "repeats"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 <= args.edit_share <= 1:
        raise UserError("--edit-share must be within [0, 1]")
    cfg = load_serve_config(args)
    run_loadtest(args.url, token, cfg, concurrency=args.concurrency, ops=args.ops,
                 edit_share=args.edit_share, edits_per_op=args.edits_per_op,
                 preload=args.preload, seed=args.seed, repeats=args.repeats,
                 baseline=not args.no_baseline,
                 out=args.out, wandb_project=args.wandb_project)
    return 0
