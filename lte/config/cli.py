"""Configs on the command line, one convention for every sub-command.

`--config YAML` (a preset), then positional `key.sub=value` overrides, then the flags a command
offers for its most used fields; one build validates all of them together, so no command
changes a config after it was checked. `--help` lists every key with its default and docstring.
"""

from __future__ import annotations

import argparse
import re

from lte.errors import UserError

OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


class ConfigHelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual, but keeps text of several lines (the config keys) as is."""

    def _fill_text(self, text, width, indent):
        text = str(text)
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def add_config_args(p: argparse.ArgumentParser, cls: type, *, preset: bool = True,
                    required: bool = False, remainder: bool = False) -> None:
    """`--config YAML` (with `preset`) and positional `key=value` overrides of `cls`; `--help`
    lists every key with its default and docstring. `remainder`: flags may follow overrides
    (launchers append theirs after the user's); the command then reads them itself."""
    if preset:
        p.add_argument("--config", required=required, metavar="YAML",
                       help="a YAML preset under configs/ (its keys as below)")
    p.add_argument("overrides", nargs=argparse.REMAINDER if remainder else "*",
                   metavar="key=value",
                   help="config overrides, YAML values: top_k=3 model.dtype=bfloat16 tags=[a,b]")
    p.formatter_class = ConfigHelpFormatter
    p.epilog = _ConfigKeys(cls, p.epilog)


class _ConfigKeys:
    """An epilog listing the keys of `cls`, written only when --help is asked for (reading the
    docstrings costs more than building every parser)."""

    def __init__(self, cls: type, before: str | None):
        self.cls, self.before = cls, before

    def __contains__(self, part: str) -> bool:  # argparse looks for '%(prog)' in the text
        return part in str(self)

    def __str__(self) -> str:
        from lte.config.docs import describe

        keys = "\n".join("  " + line for line in describe(self.cls))
        head = self.before + "\n\n" if self.before else ""
        return f"{head}config keys ({self.cls.__name__}):\n{keys}"


def stage_config(args: argparse.Namespace, cls: type, flags: dict[str, str] | None = None):
    """The config of a sub-command: `--config`, then `args.overrides`, then each flag of `flags`
    (attribute -> dotted key) that was given. Flag values are used as typed, not YAML-parsed (a
    file named `true` stays a string)."""
    from lte.config import load_config

    take_back_overrides(args)
    values = {key: getattr(args, attr) for attr, key in (flags or {}).items()
              if getattr(args, attr, None) is not None}
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise UserError(f"unrecognized arguments: {' '.join(bad)} (overrides look like "
                        "key.sub=value)")
    return load_config(cls, getattr(args, "config", None), list(args.overrides), values)


def take_back_overrides(args: argparse.Namespace) -> None:
    """argparse hands `--data a.json top_k=3` wholly to a `nargs="+"` flag: move the items that
    look like overrides back to `args.overrides` (before any config is built)."""
    for name, value in list(vars(args).items()):
        if name == "overrides" or not isinstance(value, list):
            continue
        taken = [v for v in value if isinstance(v, str) and OVERRIDE.match(v)]
        if taken:
            rest = [v for v in value if v not in taken]
            if not rest:
                raise UserError(f"--{name.replace('_', '-')} got only key=value overrides; "
                                "give it its values first")
            args.overrides = [*args.overrides, *taken]
            setattr(args, name, rest)
