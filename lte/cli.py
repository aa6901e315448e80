"""`lte` command line: each stage registers its sub-commands from its own `cli` module.

Stage `cli` modules keep heavy imports (torch, ray, faiss) inside their handlers, so `lte --help`
and argument errors stay instant. Expected errors (`UserError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"lte: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("lte: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
