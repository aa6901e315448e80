"""How many evaluation subjects a built corpus still names in its questions (whole words).

    python tools/leakage_check.py CORPUS_DIR EVAL_FILE... [--min-chars 6] [--show 10]

Reads every shard's questions (the user turn, without the editing prompt and its descriptors)
and prints the share of evaluation subjects (of at least --min-chars characters) named in any of
them, with examples; the issue-13 check wants it under 0.5 %. --descriptors also reads the
descriptors shown with the edit (whose answers may name a subject: "... was born in London").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lte.corpus.leakage import SubjectMatcher  # noqa: E402
from lte.corpus.sources import evaluation_subjects  # noqa: E402
from lte.prompts import parse_editing_prompt  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("evaluation", nargs="+")
    ap.add_argument("--min-chars", type=int, default=6)
    ap.add_argument("--show", type=int, default=10)
    ap.add_argument("--descriptors", action="store_true")
    args = ap.parse_args(argv)
    subjects = set().union(*evaluation_subjects(args.evaluation).values())
    matcher = SubjectMatcher(subjects, args.min_chars)
    found: dict[str, str] = {}
    rows = 0
    for shard in sorted(Path(args.corpus).glob("shard-*.parquet")):
        for batch in pq.ParquetFile(shard).iter_batches(columns=["messages"]):
            for messages in batch.column("messages").to_pylist():
                rows += 1
                user = [m["content"] for m in messages if m["role"] == "user"][-1]
                parsed = parse_editing_prompt(user)
                text = user if parsed is None else (
                    user if args.descriptors else parsed[0])
                for name in matcher.names(text):
                    found.setdefault(name, (parsed[0] if parsed else user)[:120])
    share = len(found) / max(len(matcher), 1)
    print(json.dumps({"rows": rows, "evaluation_subjects": len(matcher), "named": len(found),
                      "share": round(share, 5)}))
    for name, text in sorted(found.items())[:args.show]:
        print(f"  {name!r}: {text!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
