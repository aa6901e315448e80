"""tools/gpu_align_7b.sh in its dry-run mode (tiny shape, CPU): the 7B GPU check runs end to end
through the production launcher, so it is ready when a GPU is lent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_measures_every_setting(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "WORK": str(tmp_path / "work")}
    r = subprocess.run([str(REPO / "tools" / "gpu_align_7b.sh"), str(tmp_path / "out")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    report = json.loads((tmp_path / "out" / "gpu_align_7b.json").read_text())
    assert report["dry_run"] and report["layers"] == 2
    rows = {row["name"]: row for row in report["results"]}
    assert set(rows) == {"zero3:padded:4:ckpt", "zero3_offload:packed:4:nockpt"}
    for row in rows.values():
        assert "error" not in row and row["steps"] == 2 and row["tokens_per_s_per_gpu"] > 0
    padded, packed = rows["zero3:padded:4:ckpt"], rows["zero3_offload:packed:4:nockpt"]
    assert padded["computed_tokens_per_s"] > padded["tokens_per_s_per_gpu"]  # padding computed
    assert packed["computed_tokens_per_s"] == pytest.approx(packed["tokens_per_s_per_gpu"],
                                                            rel=0.01)  # none
    assert "tokens/s/GPU" in r.stdout and "MFU" in r.stdout


def test_gpu_check_refuses_a_malformed_setting(tmp_path):
    env = {**os.environ, "SETTINGS": "zero3:packed:lots"}
    r = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_align_7b.py"), "--dry-run", "--work",
                        str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "DEEPSPEED:PACKING:MICRO:CKPT" in r.stderr
