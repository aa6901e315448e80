"""The demo end to end at a smaller size: every stage runs and metrics.json is well-formed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_small_end_to_end(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [sys.executable, "-m", "lte", "demo", "--out", str(out), "heldout_edits=40",
         "corpus_edits=60", "align_steps=3", "dev_edits=40", "table_rows=2"],
        env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("edit_succ", "locality", "retrieval_hit1"):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
    assert metrics["n_heldout_edits"] == 40
    # The shipped checkpoint really edits: held-out edits mostly succeed through retrieval.
    assert metrics["edit_succ"] > 0.5 and metrics["retrieval_hit1"] > 0.8
    # Every stage left its output behind.
    assert list((out / "corpus").glob("*.parquet"))
    assert (out / "align" / "final" / "config.json").is_file()
    assert (out / "memory" / "edits.sqlite").is_file()
    assert "before / after" in proc.stdout and "stage times" in proc.stdout
