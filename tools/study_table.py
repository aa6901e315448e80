"""The README's study table from a study folder's results (tools/study_tiny.sh writes them).

    python tools/study_table.py runs/study-tiny                      # aggregation lte
    python tools/study_table.py runs/study-tiny --aggregation knowedit

One row per (evaluation folder, protocol, phase, N, method); columns per dataset: Edit Succ,
rephrase, Locality, Portability, then retrieval hit@1, the reference Fluency on ZsRE and the p50
time to store one edit and the mean latency of one ZsRE query. Percentages; "-" where a method has no such metric.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DATASETS = {"ZsRE-test-all": "ZsRE", "counterfact-edit-1k": "CF", "wikibio-test-all": "WikiBio"}
PER_DATASET = {"ZsRE": ("edit_succ", "rephrase_succ", "locality", "portability"),
               "CF": ("edit_succ", "rephrase_succ", "locality"),
               "WikiBio": ("edit_succ", "locality")}
LABELS = {"edit_succ": "Edit Succ", "rephrase_succ": "rephrase", "locality": "Locality",
          "portability": "Portability"}
PHASES = {"final": "", "after_insert": ", right after each insert",
          "after_stream": ", after the whole stream"}


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def rows(run: Path, aggregation: str) -> list[str]:
    grouped: dict[tuple, dict[str, dict]] = {}
    for results in sorted(run.glob("eval-*/results.json")):
        name = results.parent.name.removeprefix("eval-")
        for r in json.loads(results.read_text())["runs"]:
            if r["aggregation"] != aggregation or r["dataset"] not in DATASETS:
                continue
            key = (name, r["protocol"], r.get("phase", "final"), r["method"])
            grouped.setdefault(key, {}).setdefault(DATASETS[r["dataset"]], {})[r["size"]] = r
    out = []
    for (name, protocol, phase, method), by_data in grouped.items():
        sizes = sorted({s for data, runs in by_data.items() if data != "WikiBio" for s in runs})
        for size in sizes:
            cells, hits = [], []
            for data, metrics in PER_DATASET.items():
                runs = by_data.get(data, {})
                r = runs.get(size)
                if r is None and data == "WikiBio" and runs and size > max(runs):
                    r = runs[max(runs)]  # WikiBio-test has 306 cases: N=1000 reads its largest N
                m = r["metrics"] if r else {}
                cells += [_pct(m.get(k)) for k in metrics]
                hits.append(_pct(m.get("retrieval_hit1")))
            zsre = by_data.get("ZsRE", {}).get(size, {}).get("metrics", {})
            fluency = zsre.get("fluency")
            edit_ms = zsre.get("edit_time_p50_ms")
            query_ms = zsre.get("latency_ms")
            out.append(f"| {protocol} N={size}{PHASES.get(phase, ', ' + phase)} | {name} | {method} | "
                       + " | ".join(cells) + f" | {' / '.join(hits)} | "
                       + ("-" if fluency is None else f"{fluency:.0f}") + " | "
                       + ("-" if edit_ms is None else f"{edit_ms:.1f}") + " | "
                       + ("-" if query_ms is None else f"{query_ms:.1f}") + " |")
    return out


def header() -> list[str]:
    cols = [f"{data} {LABELS[k]}" for data, keys in PER_DATASET.items() for k in keys]
    head = ["protocol", "run", "method", *cols, "hit@1 ZsRE / CF / WikiBio", "Fluency ZsRE",
            "edit ms p50", "query ms ZsRE"]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--aggregation", default="lte", choices=("lte", "knowedit", "easyedit"))
    args = ap.parse_args()
    print("\n".join(header() + rows(args.run, args.aggregation)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
