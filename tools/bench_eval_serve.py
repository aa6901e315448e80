"""Throughput of `lte eval --serve` (cases/s) with 1 and 2 Generator replicas, in one run.

    python tools/bench_eval_serve.py --cases 100 --replicas 1,2 --repeats 2 --json F

For each repeat and each replica count (alternating, so that load from other work on the
machine falls on every setting), starts `lte serve` (configs/serve/tiny.yaml, `torch_threads`
1 per replica, a fresh memory), waits for /healthz, then times the same evaluation through it:
method lte, batch protocol, N cases of the synthetic world (pre-edit predictions, inserts,
every teacher-forced question, generation, reset: what `lte eval --serve` does). Reported:
cases/s per setting (summed over repeats) and the ratio to the first setting, for the whole
evaluation and for the protocol run alone (inserts, scoring, reset: without loading the data,
the pre-edit pass and writing reports). Server start-up is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-eval-serve-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(replicas: int, workdir: Path, args) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "lte", "serve", "--config", args.serve_config,
           "--port", str(port), "--memory-dir", str(workdir / f"memory-{replicas}-{port}"),
           f"generator_replicas={replicas}", "torch_threads=1", *args.overrides]
    log = open(workdir / f"serve-{replicas}-{port}.log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "LTE_API_TOKEN": TOKEN}, cwd=ROOT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"lte serve exited with {proc.returncode}; see {log.name}")
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_server(proc)
    raise RuntimeError(f"lte serve not healthy after {args.start_timeout}s; see {log.name}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def timed_eval(url: str, world: Path, out: Path, args) -> tuple[float, float]:
    """(seconds of the whole run_eval, seconds of the protocol run alone as eval logs it)."""
    from lte.config import EvalConfig, load_config
    from lte.eval.run import run_eval

    cfg = load_config(EvalConfig, str(ROOT / "configs/eval/tiny.yaml"), [
        "backend=serve", f"serve_url={url}", f"serve_concurrency={args.concurrency}",
        f"fluency_cases={args.fluency_cases}", f"out={out}"])
    from dataclasses import replace

    cfg = replace(cfg, data=[str(world)], methods=["lte"], protocols=["batch"],
                  sizes=[args.cases])
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        print(line, file=sys.stderr)

    t0 = time.perf_counter()
    run_eval(cfg, log=log)
    wall = time.perf_counter() - t0
    # "eval: <dataset> N=.. batch lte: ... (12.3s)": inserts, scoring, reset; no pre-edit pass,
    # no loading or reports.
    protocol = float(lines[-1].rsplit("(", 1)[1].rstrip("s)"))
    return wall, protocol


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=100)
    p.add_argument("--replicas", default="1,2", help="Generator replica counts to compare")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=16, help="eval's requests in flight")
    p.add_argument("--fluency-cases", type=int, default=5)
    p.add_argument("--serve-config", default=str(ROOT / "configs/serve/tiny.yaml"))
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="more lte serve overrides, e.g. memory.shards=1")
    p.add_argument("--start-timeout", type=float, default=900)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="FILE")
    args = p.parse_args()
    os.environ["LTE_API_TOKEN"] = TOKEN

    from lte.data.synth import write_world

    counts = [int(r) for r in args.replicas.split(",")]
    walls: dict[int, list[float]] = {r: [] for r in counts}
    protocols: dict[int, list[float]] = {r: [] for r in counts}
    with tempfile.TemporaryDirectory(prefix="bench-eval-serve-") as tmp:
        work = Path(tmp)
        world = write_world(work / "world.json", args.cases, seed=args.seed)
        for rep in range(args.repeats):
            for r in counts:
                proc, url = start_server(r, work, args)
                try:
                    wall, protocol = timed_eval(url, world, work / f"eval-{r}-{rep}", args)
                finally:
                    stop_server(proc)
                walls[r].append(wall)
                protocols[r].append(protocol)
                print(f"[{rep + 1}/{args.repeats}] generator_replicas={r}: {args.cases} cases "
                      f"in {wall:.1f} s = {args.cases / wall:.2f} cases/s (protocol alone "
                      f"{protocol:.1f} s)", flush=True)
    base = counts[0]
    result = {"cases": args.cases, "repeats": args.repeats, "concurrency": args.concurrency,
              "cpus": os.cpu_count(), "load_avg_end": os.getloadavg(), "settings": {}}
    for r in counts:
        rate = args.cases * len(walls[r]) / sum(walls[r])
        result["settings"][r] = {
            "cases_per_s": round(rate, 3), "wall_s": [round(w, 2) for w in walls[r]],
            "protocol_cases_per_s": round(args.cases * len(walls[r]) / sum(protocols[r]), 3),
            "protocol_s": protocols[r]}
    for r in counts:
        for key in ("cases_per_s", "protocol_cases_per_s"):
            result["settings"][r][f"{key}_ratio_vs_first"] = round(
                result["settings"][r][key] / result["settings"][base][key], 3)
        per_rep = [b / w for b, w in zip(walls[base], walls[r], strict=True)]
        result["settings"][r]["ratio_per_repeat"] = [round(x, 3) for x in per_rep]
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
