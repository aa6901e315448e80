"""`lte serve` (the HTTP service, foreground) and `lte bench serve --url URL` (load test)."""

from __future__ import annotations

import argparse
import os

from lte.config import ServeConfig
from lte.config.cli import add_config_args, stage_config

SERVE_FLAGS = {"host": "host", "port": "port", "memory_dir": "memory_dir"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve the edit memory and the editing model over HTTP (Ray Serve)",
        description="Starts a local Ray instance (or joins ray_address), deploys one memory "
                    "shard per memory.shards and the Generator, and serves the HTTP API in the "
                    "foreground until Ctrl-C. Write endpoints need Authorization: Bearer "
                    "$LTE_API_TOKEN.")
    p.add_argument("--host", help="bind address (default 127.0.0.1; others need a token)")
    p.add_argument("--port", type=int, help="HTTP port")
    p.add_argument("--memory-dir", help="root folder of the shard memories (kept across restarts)")
    add_config_args(p, ServeConfig)
    p.set_defaults(func=run_serve)


def register_bench(benchmarks) -> None:
    b = benchmarks.add_parser(
        "serve", help="load-test a running `lte serve` against in-process LTEEditor",
        description="N concurrent clients mixing edits and queries against --url; then the same "
                    "operations through LTEEditor in this process (the baseline) and the ratio.")
    b.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    b.add_argument("--token-file", help="file holding the write token (default: $LTE_API_TOKEN; "
                   "never on the command line, where ps shows it)")
    b.add_argument("--token", help=argparse.SUPPRESS)  # refused: see run_bench
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
    add_config_args(b, ServeConfig)  # the server's preset: model and memory of the baseline
    b.set_defaults(func=run_bench)


def load_serve_config(args):
    return stage_config(args, ServeConfig, SERVE_FLAGS)


def run_serve(args) -> int:
    from dataclasses import replace

    from lte.config import format_config
    from lte.serve.server import serve_forever

    cfg = load_serve_config(args)
    print(format_config(replace(cfg, token="<set>" if cfg.token else None)), flush=True)
    return serve_forever(cfg)


def read_token_file(path: str) -> str:
    from lte.errors import UserError

    try:
        token = open(path, encoding="utf-8").read().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the token ({e})", file=path) from None
    if not token:
        raise UserError("the token file is empty", file=path)
    return token


def run_bench(args) -> int:
    from lte.errors import UserError
    from lte.serve.loadtest import run_loadtest
    from lte.serve.server import TOKEN_ENV

    if args.token is not None:
        raise UserError(f"--token would show the secret to every user of `ps`; set {TOKEN_ENV} "
                        "or pass --token-file", field="token")
    token = read_token_file(args.token_file) if args.token_file else os.environ.get(TOKEN_ENV)
    if not token:
        raise UserError(f"the load test writes edits; set {TOKEN_ENV} or pass --token-file",
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
