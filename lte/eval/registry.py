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
    build: Callable  # (editor, cfg: EvalConfig, fmt: PromptFormat) -> Method
    # which model it runs on: aligned | base (the model before alignment, `base_model`; skipped,
    # said, without) | baseline (an editing baseline: `baseline_model` says base or aligned)
    model: str = "aligned"


def _formatted(method, fmt):
    method.fmt = fmt
    return method


def _lte(editor, cfg, fmt):
    from lte.eval.methods import RetrievalMethod

    return _formatted(RetrievalMethod("lte", editor), fmt)


def _no_edit(editor, cfg, fmt):
    from lte.eval.methods import NoEdit

    return NoEdit(editor)


def _prompt_only(editor, cfg, fmt):
    from lte.eval.methods import RetrievalMethod

    return _formatted(RetrievalMethod("prompt-only", editor), fmt)


def _gold_context(editor, cfg, fmt):
    from lte.eval.methods import GoldContext

    return _formatted(GoldContext(editor), fmt)


def _ft(name):
    def build(editor, cfg, fmt):
        from lte.eval.ftl import FTL

        return FTL(editor, cfg.ftl, name=name)
    return build


def _ice(editor, cfg, fmt):
    from lte.eval.ice import ICE

    return ICE(editor)


def _rome(editor, cfg, fmt):
    from lte.eval.rome import ROME

    return ROME(editor, cfg.rome, seed=cfg.seed)


# Dict order is the order of the result rows when `methods` is left empty (all of them).
METHODS: dict[str, MethodEntry] = {
    "lte": MethodEntry(_lte),
    "no-edit": MethodEntry(_no_edit),
    "prompt-only": MethodEntry(_prompt_only, model="base"),
    "gold-context": MethodEntry(_gold_context),
    "ft-l": MethodEntry(_ft("ft-l"), model="baseline"),
    "ft-m": MethodEntry(_ft("ft-m"), model="baseline"),
    "ice": MethodEntry(_ice, model="baseline"),
    "rome": MethodEntry(_rome, model="baseline"),
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
