"""An edit acknowledged by `add` survives SIGKILL in the middle of a later, large `add`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

from lte.memory import EditMemory, IndexRebuildWarning

CHILD = textwrap.dedent("""
    import json, sys
    from lte.config import EmbedderConfig, MemoryConfig
    from lte.data.record import EditRecord
    from lte.memory import EditMemory

    folder = sys.argv[1]
    cfg = MemoryConfig(embedder=EmbedderConfig(name="hashing", hashing_dim=64), add_chunk=40)
    mem = EditMemory.create(folder, cfg)
    n = 0
    while True:
        batch = [EditRecord(str(i), f"s{i}", f"question {i} about thing {i % 97} and {i % 13}?",
                            f"answer {i}") for i in range(n, n + 400)]
        ids = mem.add(batch)
        n += len(batch)
        print(json.dumps(ids), flush=True)  # acknowledged: every id here is committed
        if n == 400:
            mem.snapshot()  # later edits must come back by replaying the log after it
""")


def _question(i: int) -> str:
    return f"question {i} about thing {i % 97} and {i % 13}?"


@pytest.mark.slow
def test_sigkill_during_add_loses_no_acknowledged_edit(tmp_path):
    folder = tmp_path / "m"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(folder)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    acked: list[int] = []
    deadline = time.monotonic() + 120
    try:
        while len(acked) < 2000 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked.extend(json.loads(line))
        # Mid-add: the child is already embedding/committing the next 400-edit batch.
        time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        stderr = child.stderr.read()
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL, stderr
    assert len(acked) >= 2000, stderr

    with warnings.catch_warnings():
        warnings.simplefilter("error", IndexRebuildWarning)  # replayed, not rebuilt
        mem = EditMemory.open(folder)
    try:
        assert len(mem) >= len(acked)  # a chunk committed but not yet acknowledged may be there
        for edit_id in acked:
            stored = mem.get(edit_id)
            assert stored is not None and stored.live
        # Ids were given in order 1..n, so edit id i holds question i-1.
        questions = [_question(i - 1) for i in acked]
        hits = mem.search(questions, k=3)
        assert [h[0].id for h in hits] == acked
        # The same results as a search over the acknowledged vectors alone would give (plus any
        # committed-but-unacknowledged edits, which may also rank).
        live = mem.store.live_ids()
        vecs = mem.store.vectors(live.tolist(), mem.dim)
        exact = mem.embedder.encode(questions[::50]) @ vecs.T
        for row, h in zip(exact, hits[::50], strict=True):
            np.testing.assert_allclose([x.score for x in h], np.sort(row)[::-1][:3], atol=1e-5)
    finally:
        mem.close()
