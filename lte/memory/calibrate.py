"""Relevance gate calibration (after RECIPE): one similarity threshold for the memory.

A dev file's edits go into a temporary memory. Each rephrased question should retrieve its own
edit (a *keep* when that top-1 hit's score is at or above the threshold); each locality question
is about something else and should retrieve nothing (a *reject* when its top-1 score is below).
The threshold maximises keep rate + reject rate, or, with `min_keep`, is the highest one that
keeps at least that share.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from lte.config import MemoryConfig
from lte.data.record import EditRecord
from lte.errors import UserError


@dataclass
class Calibration:
    threshold: float
    keep_rate: float  # rephrased questions whose own edit is top-1 and passes the gate
    reject_rate: float  # locality questions whose top-1 hit is gated out
    rephrase_top1: float  # rephrased questions whose own edit is top-1, without the gate
    n_rephrase: int
    n_locality: int
    n_edits: int

    def summary(self) -> str:
        return (f"threshold {self.threshold:.4f}: keeps {self.keep_rate:.1%} of {self.n_rephrase} "
                f"rephrased questions' hits (top-1 without the gate: {self.rephrase_top1:.1%}), "
                f"rejects {self.reject_rate:.1%} of {self.n_locality} locality questions "
                f"({self.n_edits} edits)")

    def to_dict(self) -> dict:
        return asdict(self)


def choose_threshold(pos: np.ndarray, neg: np.ndarray, min_keep: float | None = None
                     ) -> tuple[float, float, float]:
    """(threshold, keep rate, reject rate) over positive and negative top-1 scores.

    `pos` holds -inf for a rephrased question whose own edit was not top-1 (never kept).
    """
    finite = pos[np.isfinite(pos)]
    candidates = np.unique(np.concatenate([finite, neg, [np.inf]]))
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    # keep(t) = share of pos >= t; reject(t) = share of neg < t
    keep = 1.0 - np.searchsorted(pos_sorted, candidates, side="left") / max(len(pos), 1)
    reject = np.searchsorted(neg_sorted, candidates, side="left") / max(len(neg), 1)
    if min_keep is not None:
        ok = np.nonzero(keep >= min_keep)[0]
        if not len(ok):
            raise UserError(f"no threshold keeps {min_keep:.1%} of the rephrase hits (at most "
                            f"{keep.max():.1%} are top-1)", field="--min-keep")
        best = ok[-1]  # candidates ascend: the last that still keeps enough rejects most
    else:
        best = int(np.argmax(keep + reject))
    return float(candidates[best]), float(keep[best]), float(reject[best])


def calibrate(records: Sequence[EditRecord], cfg: MemoryConfig,
              min_keep: float | None = None) -> Calibration:
    from lte.memory.memory import EditMemory

    rephrase = [(q, r.descriptor) for r in records for q in r.rephrase_prompts]
    locality = [qa.prompt for r in records for qas in r.locality.values() for qa in qas]
    if not rephrase or not locality:
        raise UserError("calibration needs records with rephrase prompts and locality questions "
                        f"(found {len(rephrase)} and {len(locality)})")
    with tempfile.TemporaryDirectory(prefix="lte-calibrate-") as tmp:
        # Keep every edit (keep_all): a rephrase question's own edit must be retrievable.
        mem = EditMemory.create(tmp, replace(cfg, threshold=None, conflict="keep_all"))
        try:
            mem.add(list(records), show_progress=True)
            pos_hits = mem.search([q for q, _ in rephrase], k=1, threshold=None)
            neg_hits = mem.search(locality, k=1, threshold=None)
        finally:
            mem.close()
    pos = np.array([h[0].score if h and h[0].descriptor == desc else -np.inf
                    for h, (_, desc) in zip(pos_hits, rephrase, strict=True)])
    neg = np.array([h[0].score if h else -np.inf for h in neg_hits])
    threshold, keep, reject = choose_threshold(pos, neg, min_keep)
    return Calibration(threshold, keep, reject, float(np.isfinite(pos).mean()), len(pos),
                       len(neg), len(records))
