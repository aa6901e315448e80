"""Three ways to turn per-question scores into a run's Portability and Locality, each named.

The per-question scores are the same in all three (`lte.eval.metrics`); the codes that the
paper's and EasyEdit's tables come from average them differently, so a number is only comparable
with a table that used the same aggregation:

- `lte` (`metrics.aggregate`): every question of every case. Per kind K: mean over the cases
  having K of the mean over the case's K questions; `portability` / `locality` = mean over the
  kinds present.
- `knowedit`: the LTE authors' `EasyEdit/run_knowedit.py`. One pass per aspect (portability or
  locality kind), over only the records having it, scoring only its **first** question
  (`datas[i][aspect][0]`). Per kind K: mean over the cases having K of their first K question;
  `portability` / `locality` = mean over the kinds present. Edit Succ is printed per aspect
  subset there; here it stays the mean over all cases (the same number when every case has
  every aspect).
- `easyedit`: EasyEdit's `examples/run_knowedit_llama2.py` `eval()`, the script behind EasyEdit's
  KnowEdit table. Per kind K it keeps `summary_metrics`' value (mean over cases having K of the
  case's mean over its K questions, equal to `lte`'s); `portability` / `locality` average the
  kinds **within each case first**, then over the cases having any kind.

Everything else (Edit Succ, rephrase, fluency, retrieval, times) is the same in all three.
"""

from __future__ import annotations

from collections.abc import Sequence

from lte.eval.metrics import CaseResult, aggregate, mean

AGGREGATIONS = ("lte", "knowedit", "easyedit")
# Those rendered in results.md (easyedit is in results.json).
MARKDOWN_AGGREGATIONS = ("lte", "knowedit")


def _first_per_kind(cases: Sequence[CaseResult], attr: str) -> dict[str, float]:
    kinds = sorted({k for c in cases for k in getattr(c, attr)})
    out = {}
    for kind in kinds:
        value = mean(getattr(c, attr)[kind][0] for c in cases if getattr(c, attr).get(kind))
        if value is not None:
            out[kind] = value
    return out


def _knowedit(cases: Sequence[CaseResult]) -> dict:
    metrics = aggregate(cases)
    for attr in ("portability", "locality"):
        for key in [k for k in metrics if k.startswith(f"{attr}_")]:
            del metrics[key]
        per_kind = _first_per_kind(cases, attr)
        metrics[attr] = mean(per_kind.values())
        metrics.update({f"{attr}_{k}": v for k, v in per_kind.items()})
    return metrics


def _easyedit(cases: Sequence[CaseResult]) -> dict:
    metrics = aggregate(cases)
    for attr in ("portability", "locality"):
        metrics[attr] = mean(mean(mean(qs) for qs in getattr(c, attr).values()) for c in cases)
    return metrics


def aggregate_as(name: str, cases: Sequence[CaseResult]) -> dict:
    """The run's metrics under aggregation `name` (one of AGGREGATIONS)."""
    if name == "lte":
        return aggregate(cases)
    if name == "knowedit":
        return _knowedit(cases)
    if name == "easyedit":
        return _easyedit(cases)
    raise ValueError(f"unknown aggregation {name!r}; known: {', '.join(AGGREGATIONS)}")
