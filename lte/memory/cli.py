"""`lte memory build | add | search | delete | stats | calibrate | backup | repair`: the edit
memory from the shell. `build` checks everything it can before it creates anything and builds a
new memory in a temporary folder renamed into place, so a failed build leaves nothing behind;
`add` appends to an existing one, after reading and checking every record of every file."""

from __future__ import annotations

import argparse
import contextlib
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
                       help="flat | ivf | ivfpq | ivffs | hnsw, or a factory string (Flat, "
                            "IVF4096,Flat, IVFauto,PQ32, IVFauto,PQ192x4fs,RFlat, HNSW32); "
                            "overrides memory.index")
    build.add_argument("--format", default=None, help="read every file as this format")
    # Gone: `lte memory add` is the one way to append; the flag stays only to say so.
    build.add_argument("--append", action="store_true", help=argparse.SUPPRESS)
    _config_args(build)
    build.set_defaults(func=run_build)

    add = sub.add_parser(
        "add", help="add edit files to an existing memory",
        description="Read edit files (any supported format, or the edit objects of POST "
                    "/v1/edits as a JSON array or JSON Lines), check every record, then embed "
                    "and store them in the memory in DIR under its own config: a new edit "
                    "supersedes a live one of the same fact (memory.conflict). A bad record "
                    "stores nothing.")
    add.add_argument("dir", metavar="DIR")
    add.add_argument("--edits", nargs="+", required=True, metavar="FILE")
    add.add_argument("--format", default=None, help="read every file as this format")
    _config_args(add, preset=False)  # run-time keys only (add_chunk=...): the rest is the memory's
    add.set_defaults(func=run_add)

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
    delete.add_argument("ids", nargs="+", metavar="ID")
    delete.set_defaults(func=run_delete)

    stats = sub.add_parser("stats", help="counts (live, superseded, deleted), index, embedder")
    stats.add_argument("dir", metavar="DIR")
    stats.set_defaults(func=run_stats)

    backup = sub.add_parser(
        "backup", help="consistent copy of a memory (also one being served)",
        description="Copy a memory folder through SQLite's online backup plus its index "
                    "snapshot; safe while another process writes to it. OUT must not exist "
                    "or be empty.")
    backup.add_argument("dir", metavar="DIR")
    backup.add_argument("out", metavar="OUT")
    backup.set_defaults(func=run_backup)

    repair = sub.add_parser(
        "repair", help="accept the loss after a lost or damaged edits.sqlite-wal",
        description="When `open` refuses a memory whose log holds fewer edits than were "
                    "acknowledged, take the log as it is (the missing edits are gone) and "
                    "rebuild the index from it. Restoring a backup keeps the edits instead.")
    repair.add_argument("dir", metavar="DIR")
    repair.add_argument("--accept-loss", action="store_true", required=True)
    repair.set_defaults(func=run_repair)

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


def _config_args(p, preset: bool = True) -> None:
    from lte.config import MemoryConfig
    from lte.config.cli import add_config_args

    add_config_args(p, MemoryConfig, preset=preset)


def _load_cfg(args):
    from lte.config import MemoryConfig
    from lte.config.cli import stage_config
    from lte.config.index_spec import resolve_index_spec

    index = getattr(args, "index", None)
    if index:
        args.index = resolve_index_spec(index)  # a preset name (hnsw) -> its factory string
    return stage_config(args, MemoryConfig, {"index": "index"})


def _read_all(files: list[str], fmt: str | None):
    """Every record of every file, each checked storable (file and record named otherwise)."""
    from lte.data.readers import read_records
    from lte.memory.memory import check_record

    records = []
    for path in files:
        for i, r in enumerate(read_records(path, fmt)):
            check_record(i, r, file=path)
            records.append(r)
    return records


def run_build(args) -> int:
    from pathlib import Path

    from lte.config import format_config
    from lte.layout import EDIT_LOG
    from lte.memory.build import build_new, check_out_folder, load_embedder

    if args.append:
        raise UserError(f"--append is gone: add to a memory with `lte memory add {args.out} "
                        f"--edits FILE...`")
    cfg = _load_cfg(args)
    out = Path(args.out)
    if (out / EDIT_LOG).exists():
        raise UserError(f"already holds an edit memory; add to it with `lte memory add {out} "
                        f"--edits FILE...`, or build in a new folder", file=str(out))
    check_out_folder(out)
    records = _read_all(args.edits, args.format)  # every file checked before anything is stored
    embedder = load_embedder(cfg)
    print(format_config(cfg), file=sys.stderr)
    ids, stats = build_new(out, cfg, records, embedder)
    _print_stored(ids, out, stats)
    return 0


def run_add(args) -> int:
    from pathlib import Path

    from lte.layout import EDIT_LOG
    from lte.memory.memory import EditMemory

    folder = Path(args.dir)
    if not (folder / EDIT_LOG).is_file():
        raise UserError(f"no edit memory here ({EDIT_LOG} is missing); make one with `lte "
                        f"memory build --edits FILE... --out {folder}`", file=str(folder))
    overrides = _open_overrides(args)
    records = _read_all(args.edits, args.format)  # every file checked before anything is stored
    with EditMemory.open(folder, **overrides) as mem:
        before = mem.stats()["superseded"]
        ids = mem.add(records, show_progress=True)
        mem.snapshot()
        stats = mem.stats()
    _print_stored(ids, folder, stats, stats["superseded"] - before)
    return 0


def _open_overrides(args) -> dict:
    """`key=value` overrides as `EditMemory.open` takes them (it refuses what cannot change)."""
    from lte.config import MemoryConfig, load_config
    from lte.config.cli import take_back_overrides

    take_back_overrides(args)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise UserError(f"unrecognized arguments: {' '.join(bad)} (overrides look like "
                        "key=value)")
    cfg = load_config(MemoryConfig, None, list(args.overrides), {})
    keys = {o.split("=", 1)[0].split(".", 1)[0] for o in args.overrides}
    return {k: getattr(cfg, k) for k in sorted(keys)}


def _print_stored(ids: list, folder, stats: dict, newly_superseded: int | None = None) -> None:
    now = "" if newly_superseded is None else f" ({newly_superseded} by these edits)"
    print(f"stored {len(ids)} edits in {folder}: {stats['live']} live, {stats['superseded']} "
          f"superseded{now}, {stats['deleted']} deleted; index {stats['index']}")


def run_search(args) -> int:
    from lte.memory.memory import EditMemory

    if args.k is not None and args.k <= 0:
        raise UserError(f"-k {args.k}: must be > 0")
    # Libraries print while they load (transformers: "[INFO] Running in WANDB offline mode"):
    # stdout carries only the answer, so `--json` output parses.
    with contextlib.redirect_stdout(sys.stderr), EditMemory.open(args.dir, readonly=True) as mem:
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

    ids = [_edit_id(i) for i in args.ids]
    with EditMemory.open(args.dir) as mem:
        n = mem.delete(ids)
    print(f"deleted {n} of {len(args.ids)} ids (the others were not live)")
    return 0


def run_stats(args) -> int:
    from lte.memory.memory import EditMemory

    with EditMemory.open(args.dir, readonly=True) as mem:
        print(json.dumps(mem.stats(), indent=1))
    return 0


def _edit_id(text: str) -> int:
    """An edit id as SQLite stores it: a whole number in 1 .. 2^63-1."""
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"id {text!r} is not a whole number") from None
    if not 1 <= value < 2**63:
        raise UserError(f"id {text}: edit ids are 1 .. 2^63-1")
    return value


def run_backup(args) -> int:
    from pathlib import Path

    from lte.memory.build import check_out_folder
    from lte.memory.memory import EditMemory

    out = Path(args.out)
    check_out_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    with EditMemory.open(args.dir, readonly=True) as mem:
        info = mem.backup(out)
    print(f"backed up {args.dir} to {out}: {info['edits']} edits ({info['live']} live), log "
          f"position {info['last_seq']}")
    return 0


def run_repair(args) -> int:
    from lte.memory.memory import EditMemory

    print(EditMemory.accept_loss(args.dir))
    with EditMemory.open(args.dir) as mem:
        print(f"{args.dir}: {len(mem)} live edits, index rebuilt from the log")
    return 0


def run_calibrate(args) -> int:
    from lte.memory.calibrate import calibrate

    if args.min_keep is not None and not 0 < args.min_keep <= 1:
        raise UserError(f"--min-keep {args.min_keep}: a share of rephrase hits, in (0, 1]")
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
