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
