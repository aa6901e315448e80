"""Faults that need another process: a second writer process, a full disk (RLIMIT_FSIZE, so it
runs unprivileged), stdout of `--json` under WANDB_MODE=offline. kill -9 during adds is in
tests/test_memory_durability.py; tools/chaos.py runs these as repeated trials and prints figures."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lte.errors import UserError
from lte.memory import EditMemory

pytestmark = pytest.mark.slow

HASHING = ["embedder.name=hashing", "embedder.hashing_dim=128"]


def edits_file(path: Path, n: int, start: int = 0) -> Path:
    path.write_text(json.dumps([
        {"case_id": i, "subject": f"Person{i}", "prompt": f"Person{i} works in the field of",
         "target_new": f"field{i}", "ground_truth": "physics"} for i in range(start, start + n)]))
    return path


def lte(*argv: str, fsize: int | None = None, env: dict | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    def limit():
        if fsize is not None:
            # Ignored SIGXFSZ: a write past the limit fails with EFBIG, as on a full disk.
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "lte", *argv], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit, env={**os.environ, **(env or {})})


def test_full_disk_build_says_so_in_one_line_and_leaves_nothing(tmp_path):
    proc = lte("memory", "build", "--edits", str(edits_file(tmp_path / "e.json", 3000)),
               "--out", str(tmp_path / "m"), *HASHING, fsize=300_000)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("lte: error: ") and "disk is full" in last, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json"]  # no half-built memory


def test_full_disk_append_keeps_whole_chunks_and_says_which(tmp_path):
    out = tmp_path / "m"
    assert lte("memory", "build", "--edits", str(edits_file(tmp_path / "a.json", 200)),
               "--out", str(out), *HASHING).returncode == 0
    size = sum(p.stat().st_size for p in out.iterdir())
    proc = lte("memory", "add", str(out), "--edits",
               str(edits_file(tmp_path / "b.json", 4000, start=200)), "add_chunk=500",
               fsize=size + 600_000)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "disk is full" in last and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    with EditMemory.open(out) as mem:
        live = len(mem)
        assert live >= 200 and (live - 200) % 500 == 0  # whole chunks only
        if live > 200:
            assert f"the first {live - 200} edits" in last
        else:
            assert "none of the" in last
        assert mem.index.ntotal == live


def test_a_second_writer_process_is_refused_naming_the_holder(tmp_path):
    folder = tmp_path / "m"
    EditMemory.create(folder, __import__("tests.test_memory_faults", fromlist=["x"])
                      .hashing_cfg()).close()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from lte.memory import EditMemory
        mem = EditMemory.open({str(folder)!r})
        print("open", flush=True)
        sys.stdin.read()
        mem.close()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(UserError, match=f"pid {holder.pid}"):
            EditMemory.open(folder)
        proc = lte("memory", "delete", str(folder), "1")
        assert proc.returncode == 2 and f"pid {holder.pid}" in proc.stderr
        with EditMemory.open(folder, readonly=True) as reader:  # readers are welcome
            assert len(reader) == 0
    finally:
        holder.communicate("", timeout=60)
    EditMemory.open(folder).close()  # released with the holder


def test_search_json_prints_only_json_with_wandb_offline(tmp_path):
    out = tmp_path / "m"
    assert lte("memory", "build", "--edits", str(edits_file(tmp_path / "e.json", 5)),
               "--out", str(out)).returncode == 0
    proc = lte("memory", "search", str(out), "Person3 works in the field of", "--json",
               env={"WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    hits = json.loads(proc.stdout)[0]["hits"]  # the whole of stdout parses
    assert hits[0]["descriptor"].startswith("Person3 ")
