"""The methods and protocols `lte eval` knows, by name: adding one is one entry here.

`EvalConfig.methods` / `.protocols` hold these names; the config package cannot import a stage,
so the names are checked here (`check_names`), by the CLI right after loading and by `run_eval`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lte.config import EvalConfig
from lte.errors import UserError
from lte.eval.protocols import PROTOCOLS


@dataclass(frozen=True)
class MethodEntry:
    build: Callable  # (editor, cfg: EvalConfig) -> Method
    on_base_model: bool = False  # runs on the model before alignment (`base_model`)


def _lte(editor, cfg):
    from lte.eval.methods import RetrievalMethod

    return RetrievalMethod("lte", editor)


def _no_edit(editor, cfg):
    from lte.eval.methods import NoEdit

    return NoEdit(editor)


def _prompt_only(editor, cfg):
    from lte.eval.methods import RetrievalMethod

    return RetrievalMethod("prompt-only", editor)


def _gold_context(editor, cfg):
    from lte.eval.methods import GoldContext

    return GoldContext(editor)


def _ftl(editor, cfg):
    from lte.eval.ftl import FTL

    return FTL(editor, cfg.ftl)


# Dict order is the order of the result rows when `methods` is left empty (all of them).
METHODS: dict[str, MethodEntry] = {
    "lte": MethodEntry(_lte),
    "no-edit": MethodEntry(_no_edit),
    "prompt-only": MethodEntry(_prompt_only, on_base_model=True),
    "gold-context": MethodEntry(_gold_context),
    "ft-l": MethodEntry(_ftl),
}


def method_names(cfg: EvalConfig) -> list[str]:
    """The configured methods, each once; all registered ones when the list is empty."""
    return list(dict.fromkeys(cfg.methods or METHODS))


def check_names(cfg: EvalConfig) -> None:
    """Every unknown method or protocol name, in one line."""
    problems = [f"eval.methods={m!r} is not one of {', '.join(METHODS)}"
                for m in cfg.methods if m not in METHODS]
    problems += [f"eval.protocols={p!r} is not one of {', '.join(PROTOCOLS)}"
                 for p in cfg.protocols if p not in PROTOCOLS]
    if problems:
        raise UserError("; ".join(problems))
