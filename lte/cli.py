"""`lte` command line: each stage registers its sub-commands from its own `cli` module.

Every config-taking sub-command builds its config the same way, through
`lte.config.cli.stage_config` (kept below the stages, so that they need not import this module):
`--config YAML`, positional `key.sub=value` overrides, then its flags, validated once.
Stage `cli` modules keep heavy imports (torch, ray, faiss) inside their handlers, so `lte --help`
and argument errors stay instant. Expected errors (`UserError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from lte.errors import EXIT_USER_ERROR, UserError

# Each module has `register(subparsers)` adding its parsers with `set_defaults(func=handler)`.
STAGE_CLI_MODULES = (
    "lte.data.cli",
    "lte.corpus.cli",
    "lte.align.cli",
    "lte.memory.cli",
    "lte.eval.cli",
    "lte.serve.cli",
    "lte.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lte", description="Learning to Edit at cluster scale.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in STAGE_CLI_MODULES:
        importlib.import_module(name).register(sub)
    bench = sub.add_parser("bench", help="benchmarks (each measured against a baseline in the "
                                         "same run)")
    benchmarks = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)
    for name in STAGE_CLI_MODULES:
        register_bench = getattr(sys.modules.get(name), "register_bench", None)
        if register_bench is not None:
            register_bench(benchmarks)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    # SIGTERM unwinds like Ctrl-C does (`with` blocks close what they opened: a memory writes
    # its index snapshot) instead of ending the process where it stands.
    in_main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _exit_on_sigterm) if in_main else None
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"lte: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:
        if e.filename is None:  # not about a path the user named: a bug, keep the traceback
            raise
        print(f"lte: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("lte: interrupted", file=sys.stderr)
        return 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, before)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
