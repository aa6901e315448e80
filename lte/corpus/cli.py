"""`lte corpus build --config configs/corpus/<preset>.yaml [--out DIR] [--ray-address ADDR]`."""

from __future__ import annotations

import argparse

from lte.config import CorpusConfig
from lte.config.cli import add_config_args, stage_config


def register(subparsers) -> None:
    corpus = subparsers.add_parser("corpus", help="build the parallel alignment corpus")
    sub = corpus.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)
    build = sub.add_parser(
        "build", help="sources -> parallel examples -> tokenized parquet shards + manifest",
        description="Read the edit sources, drop evaluation subjects (leakage) and duplicates, "
                    "construct in-scope / out-of-scope / linguistic examples with bare twins, "
                    "tokenize, and write deterministic parquet shards and manifest.json. "
                    "Runs on a local Ray instance unless --ray-address names a cluster.",
        epilog="example: lte corpus build --config configs/corpus/knowedit.yaml --out "
               "runs/corpus shards=8 seed=1")
    build.add_argument("--out", default=None, help="output folder (overrides `out`)")
    build.add_argument("--ray-address", default=None,
                       help="an existing Ray cluster (auto, ray://host:10001); default: local")
    build.add_argument("--engine", choices=("ray", "local"), default="ray",
                       help="local: every stage in this process, no Ray (small builds, debugging)")
    add_config_args(build, CorpusConfig, required=True)
    build.set_defaults(func=run_build)

    imp = sub.add_parser(
        "import", help="conversation files (ShareGPT / OpenAI messages) -> shards + manifest",
        description="Read FastChat/ShareGPT JSON ([{id, conversations: [{from, value}]}], what "
                    "the LTE authors released as their training data) or OpenAI-style "
                    "{messages: [{role, content}]} JSON Lines, infer with_edit and "
                    "n_descriptors from the editing prompt, and write the same tokenized shards "
                    "and manifest.json as `lte corpus build`.",
        epilog="example: lte corpus import LTE_train_data.json shards=16 --out runs/corpus-lte "
               "--config configs/corpus/paper.yaml   (overrides right after the files)")
    imp.add_argument("items", nargs="+", metavar="FILE|KEY=VALUE",
                     help="conversation files, then optional config overrides (tokenizer=..., "
                          "model.chat_format=..., shards=...)")
    imp.add_argument("--out", required=True, help="output folder")
    imp.add_argument("--config", default=None,
                     help="a corpus preset for the tokenizer, chat format and sharding")
    imp.set_defaults(func=run_import)


def run_build(args: argparse.Namespace) -> int:
    from lte.config import format_config

    cfg = stage_config(args, CorpusConfig, {"out": "out", "ray_address": "ray_address"})
    print(format_config(cfg), flush=True)

    from lte.corpus.build import build_corpus

    manifest = build_corpus(cfg, engine=args.engine)
    share = manifest["n_descriptors_share_of_with_edit"]
    records = manifest["records"]
    print(f"examples {manifest['examples']}  capabilities {manifest['per_capability']}  "
          f"n_descriptors share {share}  records dropped for leakage "
          f"{records['dropped_for_leakage_total']}  in-scope-only edits "
          f"{records['in_scope_only']}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lte.config import CorpusConfig, load_config

    overrides = [a for a in args.items if "=" in a and not Path(a).exists()]
    files = [a for a in args.items if a not in overrides]
    if not files:
        from lte.errors import UserError

        raise UserError("name at least one conversation file")
    cfg = load_config(CorpusConfig, args.config, overrides)
    cfg.out = args.out

    from lte.corpus.importer import import_corpus

    manifest = import_corpus(files, cfg)
    print(f"examples {manifest['examples']}  capabilities {manifest['per_capability']}  "
          f"n_descriptors {manifest['per_n_descriptors']}  written to {cfg.out}")
    return 0
