"""Fault suite of the edit memory and the HTTP tier, as repeated trials with printed figures.

    .venv/bin/python tools/chaos.py                  # every section, small trial counts
    .venv/bin/python tools/chaos.py --trials 10 --json chaos.json
    .venv/bin/python tools/chaos.py --no-serve       # memory sections only (no Ray, no model)

Sections (each prints one JSON object; all together at the end, and to --json):
- kill9_adds: a writer process adds edits in a loop and prints each acknowledged batch; it is
  killed (SIGKILL) at a random moment; the folder is reopened: acknowledged vs present.
- wal_damage: the same, then edits.sqlite-wal is deleted, truncated, bit-flipped or zeroed
  before reopening: each trial is "refused" (one line naming the file and the loss), "intact"
  (every acknowledged edit present), or "silent_loss" (opened with acknowledged edits missing).
- snapshot_damage: index.faiss / index.json damaged or deleted: rebuilt from the log, losses.
- two_writers: a second writer process (and `lte memory delete`) against a held folder.
- out_of_space: `lte memory build` under RLIMIT_FSIZE at several limits: exit 2 with one line
  saying the disk is full, no traceback, no folder left behind.
- cli_catalogue: bad inputs run through `lte`'s main: one line + exit 2, or a traceback.
- serve (unless --no-serve): a live `lte serve` on loopback with the tiny model: HTTP clients add
  edits and the whole process tree is SIGKILLed mid-load (acknowledged vs present after a
  restart); fuzzed HTTP requests (5xx and hangs counted); `--stalled` raw sockets that each send
  a partial body, with /healthz and /v1/query timed while they are open. Every socket is closed
  and the server tree killed at the end (bounded by --serve-budget-s).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from lte.errors import UserError  # noqa: E402

HASHING = ["embedder.name=hashing", "embedder.hashing_dim=64"]

WRITER = textwrap.dedent("""
    import json, sys
    from lte.config import EmbedderConfig, MemoryConfig
    from lte.data.record import EditRecord
    from lte.memory import EditMemory

    folder = sys.argv[1]
    cfg = MemoryConfig(embedder=EmbedderConfig(name="hashing", hashing_dim=64), add_chunk=50,
                       snapshot_every=int(sys.argv[2]))
    mem = EditMemory.create(folder, cfg)
    print("ready", flush=True)
    n = 0
    while True:
        batch = [EditRecord(str(i), f"s{i}", f"question {i} of {i % 31}?", f"answer {i}")
                 for i in range(n, n + 200)]
        ids = mem.add(batch)
        n += len(batch)
        print(json.dumps(ids), flush=True)
""")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}",
            "PYTHONUNBUFFERED": "1"}


def killed_writer(folder: Path, rng: random.Random, snapshot_every: int = 400) -> list[int]:
    """Run WRITER, SIGKILL it after a random time; returns the acknowledged ids."""
    import threading

    child = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(snapshot_every)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env=_env())
    lines: list[str] = []
    try:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError(f"writer did not start in {folder}")
        reader = threading.Thread(target=lambda: lines.extend(iter(child.stdout.readline, "")))
        reader.start()
        time.sleep(rng.uniform(0.5, 3.0))
        child.send_signal(signal.SIGKILL)
        child.wait()
        reader.join()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    # A line cut by the kill was never a whole acknowledgement.
    return [i for line in lines if line.endswith("\n") for i in json.loads(line)]


def open_quietly(folder: Path, **kw):
    from lte.memory import EditMemory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return EditMemory.open(folder, **kw)


def kill9_adds(work: Path, trials: int, rng: random.Random) -> dict:
    acked_total = lost = extra = 0
    for t in range(trials):
        folder = work / f"kill{t}"
        acked = killed_writer(folder, rng)
        with open_quietly(folder) as mem:
            live = set(mem.store.live_ids().tolist())
        acked_total += len(acked)
        lost += len(set(acked) - live)
        extra += len(live - set(acked))  # committed, killed before the acknowledgement
        shutil.rmtree(folder)
    return {"trials": trials, "acknowledged": acked_total, "lost": lost,
            "committed_not_acknowledged": extra}


def _damage_wal(wal: Path, how: str, rng: random.Random) -> None:
    if how == "delete":
        wal.unlink()
        return
    data = bytearray(wal.read_bytes())
    if how == "truncate":
        data = data[: rng.randrange(0, max(1, len(data)))]
    elif how == "bitflip":
        pos = rng.randrange(0, len(data))
        data[pos] ^= 1 << rng.randrange(8)
    elif how == "zero":
        start = rng.randrange(0, len(data))
        data[start:start + 4096] = bytes(min(4096, len(data) - start))
    wal.write_bytes(bytes(data))


def wal_damage(work: Path, trials: int, rng: random.Random) -> dict:
    from lte.memory.memory import LostEditsError

    out = {}
    for how in ("delete", "truncate", "bitflip", "zero"):
        counts = {"refused": 0, "intact": 0, "silent_loss": 0, "no_wal": 0}
        for t in range(trials):
            folder = work / f"wal-{how}{t}"
            acked = killed_writer(folder, rng, snapshot_every=10**9)
            wal = folder / "edits.sqlite-wal"
            if not wal.exists() or wal.stat().st_size == 0:
                counts["no_wal"] += 1
                shutil.rmtree(folder)
                continue
            _damage_wal(wal, how, rng)
            try:
                with open_quietly(folder) as mem:
                    live = set(mem.store.live_ids().tolist())
                counts["intact" if set(acked) <= live else "silent_loss"] += 1
            except LostEditsError:
                counts["refused"] += 1
            shutil.rmtree(folder)
        out[how] = counts
    out["silent_losses"] = sum(c["silent_loss"] for c in out.values() if isinstance(c, dict))
    return out


def snapshot_damage(work: Path, trials: int, rng: random.Random) -> dict:
    out = {}
    for how in ("index_bitflip", "index_truncate", "index_deleted", "meta_garbage"):
        counts = {"rebuilt_or_replayed": 0, "refused": 0, "lost_edits": 0}
        for t in range(trials):
            folder = work / f"snap-{how}{t}"
            acked = killed_writer(folder, rng, snapshot_every=200)
            index, meta = folder / "index.faiss", folder / "index.json"
            if how == "index_bitflip":
                data = bytearray(index.read_bytes())
                data[rng.randrange(len(data))] ^= 0x10
                index.write_bytes(bytes(data))
            elif how == "index_truncate":
                index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
            elif how == "index_deleted":
                index.unlink()
            else:
                meta.write_text("{garbage")
            try:
                with open_quietly(folder) as mem:
                    live = set(mem.store.live_ids().tolist())
                    held = set(mem.index.ids().tolist())
                ok = set(acked) <= live and live <= held
                counts["rebuilt_or_replayed" if ok else "lost_edits"] += 1
            except UserError:
                counts["refused"] += 1
            shutil.rmtree(folder)
        out[how] = counts
    return out


def two_writers(work: Path, trials: int) -> dict:
    from lte.config import EmbedderConfig, MemoryConfig
    from lte.memory import EditMemory

    refused = named = cli_refused = 0
    for t in range(trials):
        folder = work / f"two{t}"
        EditMemory.create(folder, MemoryConfig(embedder=EmbedderConfig(
            name="hashing", hashing_dim=64))).close()
        holder = subprocess.Popen([sys.executable, "-c", (
            "import sys\nfrom lte.memory import EditMemory\n"
            f"m = EditMemory.open({str(folder)!r})\nprint('open', flush=True)\n"
            "sys.stdin.read()\nm.close()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env=_env())
        try:
            holder.stdout.readline()
            try:
                EditMemory.open(folder).close()
            except UserError as e:
                refused += 1
                named += f"pid {holder.pid}" in str(e)
            proc = subprocess.run([sys.executable, "-m", "lte", "memory", "delete", str(folder),
                                   "1"], capture_output=True, text=True, env=_env())
            cli_refused += proc.returncode == 2 and f"pid {holder.pid}" in proc.stderr
        finally:
            holder.communicate("", timeout=60)
        shutil.rmtree(folder)
    return {"trials": trials, "second_writer_refused": refused, "holder_pid_named": named,
            "cli_delete_refused": cli_refused}


def out_of_space(work: Path, limits: list[int]) -> dict:
    edits = work / "oos.json"
    edits.write_text(json.dumps([{"case_id": i, "subject": f"P{i}", "prompt": f"P{i} works in",
                                  "target_new": f"f{i}", "ground_truth": "x"}
                                 for i in range(3000)]))
    one_line = left_behind = tracebacks = 0
    for limit in limits:
        out = work / f"oos-{limit}"

        def cap(limit=limit):
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        proc = subprocess.run([sys.executable, "-m", "lte", "memory", "build", "--edits",
                               str(edits), "--out", str(out), *HASHING], capture_output=True,
                              text=True, preexec_fn=cap, env=_env())
        last = (proc.stderr.strip().splitlines() or [""])[-1]
        one_line += proc.returncode == 2 and "disk is full" in last
        tracebacks += "Traceback" in proc.stderr
        left_behind += out.exists() or any(p.name.startswith(f".{out.name}.")
                                           for p in work.iterdir())
    return {"limits_bytes": limits, "one_line_disk_full": one_line, "tracebacks": tracebacks,
            "folders_left_behind": left_behind}


def cli_catalogue(work: Path) -> dict:
    """Bad inputs through `lte`'s main in this process: exit 2 with one line, or not."""
    from lte.cli import main

    edits = work / "cat.json"
    edits.write_text(json.dumps([{"case_id": i, "subject": f"P{i}", "prompt": f"P{i} works in",
                                  "target_new": f"f{i}", "ground_truth": "x"}
                                 for i in range(20)]))
    mem = work / "cat-mem"
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        main(["memory", "build", "--edits", str(edits), "--out", str(mem), *HASHING])
    (work / "afile").write_text("x")
    (work / "dir.json").mkdir(exist_ok=True)
    bad_sqlite = work / "bad-mem"
    bad_sqlite.mkdir(exist_ok=True)
    (bad_sqlite / "edits.sqlite").write_bytes(b"garbage" * 1000)
    surrogate = work / "surrogate.json"
    surrogate.write_text('[{"case_id": 1, "subject": "s", "prompt": "a \\ud800 b", '
                         '"target_new": "t", "ground_truth": "x"}]')
    results = work / "res"
    results.mkdir(exist_ok=True)
    (results / "results.json").write_text('{"runs": [{"dataset": 1}]}')
    build = ["memory", "build", "--edits"]
    cases = {
        "missing edits file": [*build, str(work / "none.json"), "--out", str(work / "x")],
        "edits file is a folder": [*build, str(work / "dir.json"), "--out", str(work / "x")],
        "--out is a file": [*build, str(edits), "--out", str(work / "afile"), *HASHING],
        "--out under a file": [*build, str(edits), "--out", str(work / "afile" / "x"),
                               *HASHING],
        "--index HNSW0": [*build, str(edits), "--out", str(work / "x"), "--index", "HNSW0",
                          *HASHING],
        "--index IVFauto,PQ0": [*build, str(edits), "--out", str(work / "x"), "--index",
                                "IVFauto,PQ0", *HASHING],
        "--index IVFauto,PQ7": [*build, str(edits), "--out", str(work / "x"), "--index",
                                "IVFauto,PQ7", *HASHING],
        "missing embedder": [*build, str(edits), "--out", str(work / "x"),
                             f"embedder.name={work / 'no-model'}"],
        "lone surrogate": [*build, str(surrogate), "--out", str(work / "x"), *HASHING],
        "damaged edits.sqlite (stats)": ["memory", "stats", str(bad_sqlite)],
        "damaged edits.sqlite (delete)": ["memory", "delete", str(bad_sqlite), "1"],
        "id past 2^63": ["memory", "delete", str(mem), str(2**63)],
        "negative id": ["memory", "delete", str(mem), "--", "-5"],
        "--threshold nan": ["memory", "search", str(mem), "q", "--threshold", "nan"],
        "malformed results.json": ["eval", "report", str(results)],
        "calibrate --min-keep -1": ["memory", "calibrate", "--dev", str(edits), "--min-keep=-1",
                                    *HASHING],
        "backup into a file": ["memory", "backup", str(mem), str(work / "afile")],
        "no memory": ["memory", "stats", str(work / "nowhere")],
    }
    ok, bad = 0, {}
    for name, argv in cases.items():
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
        except SystemExit as e:  # argparse's own errors: usage + one line, exit 2
            code = e.code
        except BaseException as e:  # noqa: BLE001 - counting them is the point
            bad[name] = f"traceback: {type(e).__name__}: {str(e)[:100]}"
            continue
        lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("lte")]
        if code == 2 and lines:
            ok += 1
        else:
            bad[name] = f"exit {code}: {err.getvalue()[-200:]}"
    # -k 2147483648 must answer (bounded by the memory), not allocate 2^31 results.
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        k_code = main(["memory", "search", str(mem), "P3 works in", "-k", "2147483648"])
    return {"cases": len(cases), "one_line_exit_2": ok, "not": bad,
            "huge_k_exit": k_code, "huge_k_s": round(time.perf_counter() - t0, 2)}


# ---- serve ------------------------------------------------------------------------------------

def _stalled_sockets(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /v1/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                  b"\r\nContent-Length: 1000\r\n\r\n{\"question\": ")
        socks.append(s)
    return socks


def _timed(fn) -> tuple[str, float]:
    t0 = time.perf_counter()
    try:
        r = fn()
        return str(r.status_code), round(time.perf_counter() - t0, 2)
    except Exception as e:  # noqa: BLE001 - a timeout is a figure here
        return type(e).__name__, round(time.perf_counter() - t0, 2)


def serve_section(work: Path, trials: int, fuzz: int, stalled: int, rng: random.Random,
                  budget_s: float) -> dict:
    import threading

    import httpx
    from serve_support import ServerProcess, tiny_model_path

    from lte.data.synth import synth_records

    token = "chaos-token"
    server = ServerProcess(work / "serve-mem", tiny_model_path(work), token, 2,
                           work / "serve.log")
    out: dict = {}
    deadline = time.monotonic() + budget_s
    t0 = time.perf_counter()
    server.start()
    out["start_s"] = round(time.perf_counter() - t0, 1)
    auth = {"Authorization": f"Bearer {token}"}
    records = synth_records(4000, 7)
    try:
        acked_total = lost = 0
        for _ in range(trials):
            if time.monotonic() > deadline:
                break
            acked: list[int] = []
            stop = threading.Event()

            def adder(offset: int, stop=stop, acked=acked):
                with httpx.Client(base_url=server.url, timeout=30) as c:
                    i = offset
                    while not stop.is_set():
                        batch = records[i % len(records):i % len(records) + 5]
                        i += 40
                        try:
                            r = c.post("/v1/edits", headers=auth,
                                       json={"edits": [{"subject": b.subject, "prompt": b.prompt,
                                                        "target_new": b.target_new}
                                                       for b in batch]})
                        except httpx.HTTPError:
                            return
                        if r.status_code == 200:
                            acked.extend(r.json()["ids"])

            threads = [threading.Thread(target=adder, args=(k * 5,)) for k in range(8)]
            for th in threads:
                th.start()
            time.sleep(rng.uniform(2, 5))
            server.kill_tree()
            stop.set()
            for th in threads:
                th.join(timeout=60)
            server.start()
            with httpx.Client(base_url=server.url, timeout=30) as c:
                missing = sum(c.get(f"/v1/edits/{i}").status_code != 200 for i in set(acked))
            acked_total += len(set(acked))
            lost += missing
        out["kill9_serving"] = {"trials": trials, "acknowledged": acked_total, "lost": lost}

        codes: dict[str, int] = {}
        hangs = 0
        bodies = [b"", b"{", b"[]", b"null", b'{"question": 5}', b'{"question": "\\ud800"}',
                  b'{"edits": [{"prompt": ""}]}', b'{"k": 99999999999999999999}', b"\xff\xfe",
                  json.dumps({"question": "x" * 100000}).encode()]
        paths = ["/v1/query", "/v1/edits", "/v1/edits/abc", "/v1/edits/99999999999999999999",
                 "/healthz", "/nope"]
        with httpx.Client(base_url=server.url, timeout=20) as c:
            for _ in range(fuzz):
                if time.monotonic() > deadline:
                    break
                body = rng.choice(bodies) if rng.random() < 0.6 else rng.randbytes(
                    rng.randrange(1, 300))
                method = rng.choice(["POST", "GET", "DELETE", "PUT"])
                try:
                    r = c.request(method, rng.choice(paths), content=body,
                                  headers={**(auth if rng.random() < 0.5 else {}),
                                           "Content-Type": "application/json"})
                    codes[str(r.status_code)] = codes.get(str(r.status_code), 0) + 1
                except httpx.TimeoutException:
                    hangs += 1
        out["fuzz"] = {"requests": sum(codes.values()) + hangs, "codes": codes,
                       "5xx": sum(v for k, v in codes.items() if k.startswith("5")),
                       "hangs": hangs}

        socks: list[socket.socket] = []
        try:
            socks = _stalled_sockets(server.port, stalled)
            time.sleep(2)
            with httpx.Client(base_url=server.url, timeout=10) as c:
                health = _timed(lambda: c.get("/healthz"))
                query = _timed(lambda: c.post("/v1/query", json={"question": "Who?",
                                                                 "generate": False}))
            states = {"open": 0, "closed_by_server": 0, "answered": 0}
            for s in socks:
                s.settimeout(0.05)
                try:
                    data = s.recv(64)
                    states["answered" if data else "closed_by_server"] += 1
                except TimeoutError:
                    states["open"] += 1
                except OSError:
                    states["closed_by_server"] += 1
        finally:
            for s in socks:
                s.close()
        out["stalled"] = {"connections": len(socks), "healthz": health, "query": query,
                          "sockets_after_checks": states}
        # SIGTERM: each shard writes its snapshot on the way out, so a restart replays nothing.
        server.stop()
        out["sigterm_snapshots"] = _snapshot_positions(work / "serve-mem")
    finally:
        server.kill_tree()
    return out


def _snapshot_positions(root: Path) -> dict:
    import sqlite3

    current = behind = 0
    for shard in sorted(root.glob("shard-*")):
        snap = json.loads((shard / "index.json").read_text())["last_seq"]
        db = sqlite3.connect(f"file:{shard / 'edits.sqlite'}?mode=ro", uri=True)
        log = db.execute("SELECT COALESCE(MAX(seq), 0) FROM log").fetchone()[0]
        db.close()
        current += snap == log
        behind += snap != log
    return {"shards_snapshot_current": current, "shards_snapshot_behind": behind}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--fuzz", type=int, default=300)
    p.add_argument("--stalled", type=int, default=500)
    p.add_argument("--no-serve", action="store_true")
    p.add_argument("--only", default=None, metavar="NAME,NAME", help="run only these sections")
    p.add_argument("--serve-budget-s", type=float, default=420)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="lte-chaos-"))
    figures: dict = {}
    sections = [
        ("kill9_adds", lambda: kill9_adds(work, args.trials * 2, rng)),
        ("wal_damage", lambda: wal_damage(work, args.trials, rng)),
        ("snapshot_damage", lambda: snapshot_damage(work, args.trials, rng)),
        ("two_writers", lambda: two_writers(work, args.trials)),
        ("out_of_space", lambda: out_of_space(work, [20_000, 60_000, 150_000, 600_000])),
        ("cli_catalogue", lambda: cli_catalogue(work)),
    ]
    if not args.no_serve:
        sections.append(("serve", lambda: serve_section(work, args.trials, args.fuzz,
                                                        args.stalled, rng,
                                                        args.serve_budget_s)))
    if args.only:
        sections = [(n, r) for n, r in sections if n in args.only.split(",")]
    try:
        for name, run in sections:
            t0 = time.perf_counter()
            figures[name] = run()
            figures[name]["seconds"] = round(time.perf_counter() - t0, 1)
            print(name, json.dumps(figures[name]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
