"""The demo end to end at a smaller size: every stage runs and metrics.json is well-formed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


REAL_ANSWERED = 5  # of the 6 real edits, answered with the new object (6 when shipped)


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
    assert (out / "memory" / ".made-by-lte-demo").is_file()
    assert (out / "align" / ".made-by-lte-demo").is_file()
    # The real-world part: the demo's own real edits, asked in other words.
    real = metrics["real_world"]
    assert real["edits"] == 6 and len(real["rows"]) == 9
    assert real["unrelated_unchanged"] == real["unrelated"] == 3  # the gate hides the edits
    assert real["answered_new"] >= REAL_ANSWERED, real["rows"]
    assert "real-world edits" in proc.stdout


def test_demo_refuses_to_replace_folders_it_did_not_make(tmp_path, capsys):
    from lte.cli import main

    for name in ("memory", "align"):
        out = tmp_path / name / "demo"
        (out / name).mkdir(parents=True)
        (out / name / "mine.txt").write_text("not the demo's")
        assert main(["demo", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "was not made by `lte demo`" in err[0], err
        assert (out / name / "mine.txt").read_text() == "not the demo's"
