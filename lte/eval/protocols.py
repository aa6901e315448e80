"""Editing protocols: what is in memory (or in the weights) when each case is evaluated.

- `single`: each edit alone: reset, insert edit i, evaluate case i. N independent runs.
- `batch`: reset, insert all N edits at once, then evaluate all N cases.
- `sequential`: reset, then edits stream in one by one. Two phases are reported:
  `after_insert` evaluates case i right after inserting edit i (edit i competes with i stored
  edits, which is what the reference code measured), and `after_stream` evaluates all N cases
  again once the stream has ended (every case competes with all N).

Each phase returns a `PhaseResult`: per-case results plus latency and edit times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from lte.data.record import EditRecord
from lte.eval.aggregate import aggregate_as
from lte.eval.methods import timed_insert
from lte.eval.metrics import CaseResult, mean
from lte.eval.scoring import ScoreOptions, score_cases


@dataclass
class PhaseResult:
    protocol: str
    phase: str  # final | after_insert | after_stream
    cases: list[CaseResult]
    latency_ms: list[float]
    edit_seconds: float
    n_edits: int
    edit_times: list[float] = field(default_factory=list)  # seconds per edit, one per edit

    def metrics(self, aggregation: str = "lte") -> dict:
        import numpy as np

        out = aggregate_as(aggregation, self.cases)
        out["latency_ms"] = mean(self.latency_ms)
        out["edit_time_ms"] = 1000.0 * self.edit_seconds / max(self.n_edits, 1)
        times = self.edit_times or [0.0]
        out["edit_time_p50_ms"] = 1000.0 * float(np.percentile(times, 50))
        out["edit_time_p95_ms"] = 1000.0 * float(np.percentile(times, 95))
        return out


def _per_edit(seconds: float, n: int) -> list[float]:
    """An insert call's time shared among the edits it applied."""
    return [seconds / n] * n if n else []


def _one_case(opts: ScoreOptions, n: int) -> ScoreOptions:
    """Options for case n scored alone: fluency only for the first `fluency_cases` cases."""
    return opts if n < opts.fluency_cases else replace(opts, fluency_cases=0)


def run_single(method, records, pre, opts: ScoreOptions) -> list[PhaseResult]:
    cases, lat, secs, times = [], [], 0.0, []
    for n, r in enumerate(records):
        method.reset()
        ids, dt = timed_insert(method, [r])
        secs += dt
        times.append(dt)
        res, latency = score_cases(method, [r], ids, pre, _one_case(opts, n))
        cases += res
        lat.append(latency)
    method.reset()
    return [PhaseResult("single", "final", cases, lat, secs, len(records), times)]


def run_batch(method, records, pre, opts: ScoreOptions) -> list[PhaseResult]:
    method.reset()
    ids, secs = timed_insert(method, records)
    cases, latency = score_cases(method, records, ids, pre, opts)
    method.reset()
    return [PhaseResult("batch", "final", cases, [latency], secs, len(records),
                        _per_edit(secs, len(records)))]


def run_sequential(method, records, pre, opts: ScoreOptions) -> list[PhaseResult]:
    method.reset()
    ids: dict[str, int] = {}
    cases, lat, secs, times = [], [], 0.0, []
    for n, r in enumerate(records):
        new, dt = timed_insert(method, [r])
        ids.update(new)
        secs += dt
        times.append(dt)
        res, latency = score_cases(method, [r], ids, pre, _one_case(opts, n))
        cases += res
        lat.append(latency)
    after_insert = PhaseResult("sequential", "after_insert", cases, lat, secs, len(records),
                               times)
    cases_end, latency_end = score_cases(method, records, ids, pre, opts)
    method.reset()
    after_stream = PhaseResult("sequential", "after_stream", cases_end, [latency_end], secs,
                               len(records), times)
    return [after_insert, after_stream]


PROTOCOLS = {"single": run_single, "batch": run_batch, "sequential": run_sequential}


def run_protocol(protocol: str, method, records: Sequence[EditRecord], pre,
                 opts: ScoreOptions) -> list[PhaseResult]:
    return PROTOCOLS[protocol](method, list(records), pre, opts)
