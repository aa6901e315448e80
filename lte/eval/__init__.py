"""Evaluation: metrics, protocols, baselines, reports.

`evaluate(editor, records, protocol="batch") -> dict` scores a ready editor (the demo's entry);
`lte eval` (lte.eval.cli) runs every method x protocol x size and writes reports.
"""

from __future__ import annotations

__all__ = ["evaluate"]


def evaluate(editor, records, protocol: str = "batch", opts=None) -> dict:
    from lte.eval.run import evaluate as _evaluate

    return _evaluate(editor, records, protocol=protocol, opts=opts)
