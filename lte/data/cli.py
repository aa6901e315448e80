"""`lte data inspect FILE...` and `lte data synth --edits N --seed S --out FILE`."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lte.errors import UserError

SYNTH_MIN_EDITS, SYNTH_MAX_EDITS = 10, 1_000_000


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="read, inspect and generate edit records")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    inspect = sub.add_parser(
        "inspect", help="format, record count and question kinds of benchmark files",
        description="Per file: the detected format, the number of records, and the number of "
                    "portability and locality questions of each kind.")
    inspect.add_argument("files", nargs="+", metavar="FILE")
    inspect.add_argument("--format", default=None,
                         help="read every file as this format instead of detecting it")
    inspect.add_argument("--json", action="store_true", help="print one JSON object per file")
    inspect.set_defaults(func=run_inspect)

    synth = sub.add_parser(
        "synth", help="write a synthetic world of fictional edits (KnowEdit ZsRE format)",
        description="Fictional entities and relations with counterfactual edits, paraphrases, "
                    "locality and two-hop portability questions. Deterministic for a seed.")
    synth.add_argument("--edits", type=int, required=True, metavar="N",
                       help=f"number of edits, {SYNTH_MIN_EDITS:,} to {SYNTH_MAX_EDITS:,}")
    synth.add_argument("--seed", type=int, default=0, metavar="S")
    synth.add_argument("--out", required=True, metavar="FILE")
    synth.set_defaults(func=run_synth)


@dataclass
class FileSummary:
    file: str
    format: str
    records: int = 0
    portability: Counter = field(default_factory=Counter)  # kind -> questions
    locality: Counter = field(default_factory=Counter)
    dropped_questions: int = 0
    empty_targets: int = 0

    def to_dict(self) -> dict:
        return {"file": self.file, "format": self.format, "records": self.records,
                "portability": dict(self.portability), "locality": dict(self.locality),
                "dropped_questions": self.dropped_questions,
                "empty_targets": self.empty_targets}


def summarize(path: str, format: str | None = None) -> FileSummary:
    """Stream one file and count its records and questions per kind."""
    from tqdm import tqdm

    from lte.data.readers import ReadStats, detect_format, iter_records

    fmt = format or detect_format(path)
    stats = ReadStats()
    summary = FileSummary(path, fmt)
    # A million-record world takes about a minute; the bar shows only on a terminal.
    with tqdm(iter_records(path, fmt, stats), desc=path, unit=" records", disable=None,
              leave=False, mininterval=1.0) as records:
        for record in records:
            for kind, qas in record.portability.items():
                summary.portability[kind] += len(qas)
            for kind, qas in record.locality.items():
                summary.locality[kind] += len(qas)
    summary.records = stats.records
    summary.dropped_questions = sum(stats.dropped_questions.values())
    summary.empty_targets = stats.empty_targets
    return summary


def _kinds(counts: Counter) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "-"


def format_table(summaries: list[FileSummary]) -> str:
    header = ("file", "format", "records", "portability (questions)", "locality (questions)")
    rows = [(s.file, s.format, str(s.records), _kinds(s.portability), _kinds(s.locality))
            for s in summaries]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {2}  # numbers right-aligned

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(header), line(["-" * w for w in widths]), *map(line, rows)]
    for s in summaries:
        notes = []
        if s.dropped_questions:
            notes.append(f"{s.dropped_questions} questions without any answer dropped")
        if s.empty_targets:
            notes.append(f"{s.empty_targets} records with an empty new answer")
        if notes:
            out.append(f"note: {s.file}: {'; '.join(notes)}")
    return "\n".join(out)


def run_inspect(args: argparse.Namespace) -> int:
    from lte.data.readers import FORMATS

    if args.format is not None and args.format not in FORMATS:
        raise UserError(f"--format {args.format!r} is not one of {', '.join(FORMATS)}")
    # Read every file before printing, so a bad file gives one error line and no partial table.
    summaries = [summarize(path, args.format) for path in args.files]
    if args.json:
        for s in summaries:
            print(json.dumps(s.to_dict()))
    else:
        print(format_table(summaries))
    return 0


def run_synth(args: argparse.Namespace) -> int:
    if not SYNTH_MIN_EDITS <= args.edits <= SYNTH_MAX_EDITS:
        raise UserError(f"--edits {args.edits} is out of range: give {SYNTH_MIN_EDITS} to "
                        f"{SYNTH_MAX_EDITS:,} edits")
    if Path(args.out).is_dir():
        raise UserError("--out names a folder; give the path of the JSON file to write",
                        file=args.out)
    from lte.data.synth import write_world

    write_world(args.out, args.edits, args.seed, progress=sys.stderr.isatty())
    print(f"wrote {args.edits} edits (seed {args.seed}) to {args.out}")
    return 0
