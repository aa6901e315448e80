"""Reader cost on a synthetic world: streaming vs. a plain `json.load` baseline, same machine.

    python tools/bench_readers.py --edits 100000            # writes a world to a temp folder
    python tools/bench_readers.py --file world.json         # or reads an existing file

Each mode runs in its own process, so peak memory (max RSS) is its own. Reported: CPU seconds,
peak RSS, and the ratio of each mode's CPU time to the `json.load` baseline (which only decodes
and builds no EditRecord).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = {
    "json.load (baseline)": "import json; n = len(json.load(open(PATH, encoding='utf-8')))",
    "iter_records (stream)": "from lte.data.readers import iter_records\n"
                             "n = sum(1 for _ in iter_records(PATH))",
    "read_records (list)": "from lte.data.readers import read_records\n"
                           "n = len(read_records(PATH))",
}

RUNNER = """
import json, resource, sys
PATH = sys.argv[1]
before = resource.getrusage(resource.RUSAGE_SELF)
{body}
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
print(json.dumps({{"records": n, "cpu_s": cpu, "max_rss_mib": after.ru_maxrss / 1024}}))
"""


def run_mode(body: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", RUNNER.format(body=body), str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edits", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--file", default=None, help="an existing edit file instead of a new world")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.file) if args.file else Path(tmp) / "world.json"
        if not args.file:
            from lte.data.synth import write_world

            write_world(path, args.edits, args.seed)
        size_mib = path.stat().st_size / 2**20
        print(f"{path.name}: {size_mib:.1f} MiB")
        results = {name: run_mode(body, path) for name, body in MODES.items()}
    base = results["json.load (baseline)"]["cpu_s"]
    print(f"{'mode':<24}{'records':>10}{'CPU s':>9}{'x baseline':>12}{'max RSS MiB':>13}")
    for name, r in results.items():
        print(f"{name:<24}{r['records']:>10}{r['cpu_s']:>9.2f}{r['cpu_s'] / base:>12.2f}"
              f"{r['max_rss_mib']:>13.0f}")


if __name__ == "__main__":
    main()
