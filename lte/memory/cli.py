"""`lte memory build | search | delete | stats | calibrate`: the edit memory from the shell."""

from __future__ import annotations

import json
import sys

from lte.errors import UserError


def register(subparsers) -> None:
    memory = subparsers.add_parser("memory", help="build, search and manage an edit memory")
    sub = memory.add_subparsers(dest="memory_command", metavar="ACTION", required=True)

    build = sub.add_parser(
        "build", help="embed edit files into a memory folder",
        description="Read edit files (any supported format), embed each edit's key, and store "
                    "them in a memory folder (edits.sqlite + index.faiss + index.json).")
    build.add_argument("--edits", nargs="+", required=True, metavar="FILE")
    build.add_argument("--out", required=True, metavar="DIR")
    build.add_argument("--index", default=None, metavar="TYPE",
                       help="flat | ivf | ivfpq | hnsw, or a factory string (Flat, IVF4096,Flat, "
                            "IVFauto,PQ32, HNSW32); overrides memory.index")
    build.add_argument("--format", default=None, help="read every file as this format")
    build.add_argument("--append", action="store_true",
                       help="add to the memory already in DIR instead of refusing")
    _config_args(build)
    build.set_defaults(func=run_build)

    search = sub.add_parser("search", help="top-k edit descriptors for questions")
    search.add_argument("dir", metavar="DIR")
    search.add_argument("questions", nargs="+", metavar="QUESTION")
    search.add_argument("-k", type=int, default=None, help="hits per question (default top_k)")
    search.add_argument("--threshold", type=float, default=None,
                        help="relevance gate for this search (default: the memory's)")
    search.add_argument("--json", action="store_true", help="print JSON")
    search.set_defaults(func=run_search)

    delete = sub.add_parser("delete", help="delete edits by id (kept in the log, marked)")
    delete.add_argument("dir", metavar="DIR")
    delete.add_argument("ids", nargs="+", type=int, metavar="ID")
    delete.set_defaults(func=run_delete)

    stats = sub.add_parser("stats", help="counts (live, superseded, deleted), index, embedder")
    stats.add_argument("dir", metavar="DIR")
    stats.set_defaults(func=run_stats)

    cal = sub.add_parser(
        "calibrate", help="pick the relevance-gate threshold on a dev file",
        description="Store the dev file's edits in a temporary memory, then search with each "
                    "record's rephrased questions (should keep their edit) and locality "
                    "questions (should get nothing), and pick the similarity threshold that "
                    "best separates the two. Reports both rates.")
    cal.add_argument("--dev", required=True, metavar="FILE")
    cal.add_argument("--format", default=None)
    cal.add_argument("--min-keep", type=float, default=None, metavar="RATE",
                     help="highest threshold keeping at least this share of rephrase hits "
                          "(default: maximise keep rate + reject rate)")
    cal.add_argument("--memory", default=None, metavar="DIR",
                     help="store the chosen threshold in this memory's config")
    cal.add_argument("--json", default=None, metavar="FILE", help="write the figures as JSON")
    _config_args(cal)
    cal.set_defaults(func=run_calibrate)


def _config_args(p) -> None:
    p.add_argument("--config", default=None, metavar="YAML", help="a configs/memory preset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config field, e.g. --set embedder.batch_size=64")


def _load_cfg(args, index: str | None = None):
    from lte.config import MemoryConfig, load_config
    from lte.memory.index import resolve_index_spec

    overrides = list(args.overrides)
    if index:
        overrides.append(f"index={resolve_index_spec(index)}")
    return load_config(MemoryConfig, args.config, overrides)


def _read_all(files: list[str], fmt: str | None):
    from lte.data.readers import read_records

    records = []
    for path in files:
        records.extend(read_records(path, fmt))
    return records


def run_build(args) -> int:
    from pathlib import Path

    from lte.config import format_config
    from lte.layout import EDIT_LOG
    from lte.memory.memory import EditMemory

    cfg = _load_cfg(args, args.index)
    records = _read_all(args.edits, args.format)  # every file checked before anything is stored
    out = Path(args.out)
    if (out / EDIT_LOG).exists():
        if not args.append:
            raise UserError("already holds an edit memory; pass --append to add to it",
                            file=str(out))
        mem = EditMemory.open(out)
    else:
        print(format_config(cfg), file=sys.stderr)
        mem = EditMemory.create(out, cfg)
    with mem:
        ids = mem.add(records, show_progress=True)
        mem.snapshot()
        stats = mem.stats()
    print(f"stored {len(ids)} edits in {out}: {stats['live']} live, {stats['superseded']} "
          f"superseded, {stats['deleted']} deleted; index {stats['index']}")
    return 0


def run_search(args) -> int:
    from lte.memory.memory import EditMemory

    if args.k is not None and args.k <= 0:
        raise UserError(f"-k {args.k}: must be > 0")
    with EditMemory.open(args.dir) as mem:
        threshold = ... if args.threshold is None else args.threshold
        results = mem.search(args.questions, k=args.k, threshold=threshold)
    if args.json:
        print(json.dumps([{"question": q, "hits": [h.__dict__ for h in hits]}
                          for q, hits in zip(args.questions, results, strict=True)], indent=1))
        return 0
    for q, hits in zip(args.questions, results, strict=True):
        if len(args.questions) > 1:
            print(f"# {q}")
        if not hits:
            print("(no edit passes the relevance gate)")
        for h in hits:
            print(f"{h.id}\t{h.score:.4f}\t{h.descriptor}")
    return 0


def run_delete(args) -> int:
    from lte.memory.memory import EditMemory

    with EditMemory.open(args.dir) as mem:
        n = mem.delete(args.ids)
    print(f"deleted {n} of {len(args.ids)} ids (the others were not live)")
    return 0


def run_stats(args) -> int:
    from lte.memory.memory import EditMemory

    with EditMemory.open(args.dir) as mem:
        print(json.dumps(mem.stats(), indent=1))
    return 0


def run_calibrate(args) -> int:
    from lte.memory.calibrate import calibrate

    cfg = _load_cfg(args)
    records = _read_all([args.dev], args.format)
    result = calibrate(records, cfg, min_keep=args.min_keep)
    print(result.summary())
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps(result.to_dict(), indent=1))
    if args.memory:
        from lte.memory.memory import EditMemory

        with EditMemory.open(args.memory) as mem:
            mem.set_threshold(result.threshold)
        print(f"threshold {result.threshold:.4f} stored in {args.memory}")
    return 0
