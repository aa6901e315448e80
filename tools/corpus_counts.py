"""Examples per source x capability x n_descriptors of a built corpus, as a Markdown table.

    python tools/corpus_counts.py CORPUS_DIR [CORPUS_DIR ...]

n_descriptors 0 is the bare twin; 1-3 carry the edit (and 0-2 distractors).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

COLUMNS = ["source", "capability", "n_descriptors"]


def counts(folder: Path) -> Counter:
    c: Counter = Counter()
    for shard in sorted(folder.glob("shard-*.parquet")):
        t = pq.read_table(shard, columns=COLUMNS).to_pydict()
        c.update(zip(t["source"], t["capability"], t["n_descriptors"], strict=True))
    return c


def main(argv: list[str]) -> int:
    for folder in map(Path, argv):
        c = counts(folder)
        print(f"\n{folder} ({sum(c.values())} examples)\n")
        print("| source | capability | bare (0) | 1 | 2 | 3 | total |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for source, cap in sorted({(s, k) for s, k, _ in c}):
            row = [c[(source, cap, n)] for n in range(4)]
            print(f"| {source} | {cap} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
