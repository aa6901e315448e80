"""Benchmark: the Ray Data corpus build vs. the same functions in one process.

    nice -n 10 .venv/bin/python tools/bench_corpus.py [--config configs/corpus/knowedit.yaml]
        [--out /tmp/bench-corpus] [KEY=VALUE ...]

Runs `lte corpus build` twice in one run, `--engine local` (baseline: every stage in one
process) then `--engine ray` (local Ray with the config's num_cpus), each in a fresh process.
Reports records/s (records used / wall time of the whole build, start-up included),
examples/s, records per CPU-second (user+system time of the build's process tree: a figure that
holds on a machine shared with other jobs), the per-stage times the build prints, and the peak
resident memory of the process tree (driver plus Ray's raylet, GCS and workers; sampled every
0.2 s, so shared pages count once per process). Prints the ray/local ratios and whether the shards are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
STAGE = re.compile(r"^\[corpus\] (.*) \((\d+\.\d)s\)$")


def _sample_tree(proc: psutil.Process, cpu: dict[int, float]) -> int:
    """RSS of the process tree now; records each process's CPU seconds so far in `cpu`."""
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            with p.oneshot():
                total += p.memory_info().rss
                t = p.cpu_times()
                cpu[p.pid] = max(cpu.get(p.pid, 0.0), t.user + t.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def run_build(engine: str, config: str, out: Path, overrides: list[str]) -> dict:
    cmd = [sys.executable, "-m", "lte", "corpus", "build", "--config", config, "--out",
           str(out), "--engine", engine, *overrides]
    env = dict(os.environ, RAY_AUTH_MODE="disabled", WANDB_MODE="offline", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    start = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True)
    peak = [0]
    cpu: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _sample_tree(proc, cpu))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stages, tail = [], []
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-20:]
        m = STAGE.match(line)
        if m:
            stages.append((m.group(1), float(m.group(2))))
    rc = proc.wait()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if rc != 0:
        sys.exit(f"{engine} build failed (exit {rc}):\n" + "\n".join(tail))
    manifest = json.loads((out / "manifest.json").read_text())
    records = sum(manifest["records"]["used"].values())
    cpu_s = sum(cpu.values())
    return {"engine": engine, "wall_s": round(wall, 1), "cpu_s": round(cpu_s, 1),
            "records_per_cpu_s": round(records / max(cpu_s, 1e-9), 1), "records": records,
            "examples": manifest["examples"], "records_per_s": round(records / wall, 1),
            "examples_per_s": round(manifest["examples"] / wall, 1),
            "peak_rss_mib": round(peak[0] / 2**20), "stages": stages,
            "shards": [s["sha256"] for s in manifest["shards"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/corpus/knowedit.yaml")
    parser.add_argument("--out", default="/tmp/bench-corpus")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()

    results = {}
    for engine in ("local", "ray"):
        results[engine] = run_build(engine, args.config, Path(args.out) / engine, args.overrides)
        r = results[engine]
        print(f"{engine:>5}: {r['records']} records -> {r['examples']} examples in "
              f"{r['wall_s']} s = {r['records_per_s']} records/s ({r['examples_per_s']} "
              f"examples/s), {r['cpu_s']} CPU s = {r['records_per_cpu_s']} records/CPU-s, "
              f"peak RSS {r['peak_rss_mib']} MiB", flush=True)
        for name, secs in r["stages"]:
            print(f"         {secs:7.1f} s  {name}")
    local, ray = results["local"], results["ray"]
    print(f"ratio ray/local: records/s {ray['records_per_s'] / local['records_per_s']:.2f}x, "
          f"records/CPU-s {ray['records_per_cpu_s'] / local['records_per_cpu_s']:.2f}x, "
          f"peak memory {ray['peak_rss_mib'] / max(local['peak_rss_mib'], 1):.2f}x; "
          f"identical shards: {ray['shards'] == local['shards']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
