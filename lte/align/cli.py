"""`lte align --config configs/align/<preset>.yaml [--deepspeed X.json] [--out DIR] [--resume]
[key=value ...]`: one process per device under a launcher (launch/align.sh, slurm/align.sh), or a
single plain process. Flags and overrides may come in any order.

Two more verbs, for scripts: `lte align init-model --config YAML --out DIR [key=value ...]`
saves the model a run would start from (the prompt-only baseline of a from-scratch alignment);
`lte align smoke-data --out DIR [--examples N] [--shards N] [--distractors N] [--vocab-size N]`
writes a tiny model (DIR/model) and synthetic corpus shards (DIR/corpus) in seconds."""

from __future__ import annotations

import argparse

from lte.config import AlignConfig
from lte.config.cli import add_config_args, stage_config

FLAGS = {"deepspeed": "deepspeed", "out": "out"}  # flag attribute -> AlignConfig key


def _add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--deepspeed", help="DeepSpeed JSON (overrides the preset's deepspeed)")
    p.add_argument("--out", help="run folder (overrides the preset's out)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint in the run folder "
                        "(starts from step 0 when there is none)")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "align", help="align a chat model on a corpus (HF Trainer + DeepSpeed ZeRO)",
        usage="lte align --config YAML [--deepspeed JSON] [--out DIR] [--resume] "
              "[key=value ...]\n       lte align init-model --config YAML --out DIR "
              "[key=value ...]\n       lte align smoke-data --out DIR [--examples N] "
              "[--shards N] [--distractors N] [--vocab-size N]",
        description="Full fine-tuning on the parallel corpus; loss on answer tokens only. "
                    "Run one process per device with launch/align.sh or slurm/align.sh. "
                    "init-model saves the model a run starts from; smoke-data writes a tiny "
                    "model and corpus (GPU checks, benchmarks).")
    _add_flags(p)
    # REMAINDER keeps flags that follow an override (launchers append theirs after the user's)
    add_config_args(p, AlignConfig, remainder=True)
    p.set_defaults(func=_run)


def _split(args, rest: list[str], prog: str) -> argparse.Namespace:
    """Flags given after the first override (or verb) join those given before it."""
    late = argparse.ArgumentParser(prog=prog, add_help=False)
    late.add_argument("--config")
    _add_flags(late)
    flags, overrides = late.parse_known_args(rest)
    bad = [o for o in overrides if o.startswith("-") or "=" not in o]
    if bad:
        from lte.errors import UserError

        raise UserError(f"unrecognized arguments: {' '.join(bad)} (flags: --config, --deepspeed, "
                        "--out, --resume; overrides look like key.sub=value)")
    if not (flags.config or args.config):
        from lte.errors import UserError

        raise UserError(f"{prog} needs --config YAML (e.g. configs/align/tiny.yaml)")
    return argparse.Namespace(
        config=flags.config or args.config, overrides=overrides,
        resume=flags.resume or args.resume,
        **{k: getattr(flags, k) or getattr(args, k) for k in FLAGS})


def _run(args) -> int:
    rest = list(args.overrides)
    if rest and rest[0] in VERBS:
        return VERBS[rest[0]](args, rest[1:])
    ns = _split(args, rest, "lte align")
    cfg = stage_config(ns, AlignConfig, FLAGS)

    from lte.align import distributed
    from lte.align.recipe import run_alignment

    final = run_alignment(cfg, resume=ns.resume)
    if distributed.is_main():
        print(final, flush=True)
    return 0


def _init_model(args, rest: list[str]) -> int:
    ns = _split(args, rest, "lte align init-model")
    if not ns.out:
        from lte.errors import UserError

        raise UserError("lte align init-model needs --out DIR (where the model is saved)")
    # --out names the model folder here, not the run folder of the config.
    cfg = stage_config(ns, AlignConfig, {"deepspeed": "deepspeed"})

    from lte.align.recipe import save_initial_model

    print(save_initial_model(cfg, ns.out), flush=True)
    return 0


def _smoke_data(args, rest: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lte align smoke-data",
                                description="A tiny model (OUT/model) and synthetic corpus "
                                            "shards (OUT/corpus), in seconds.")
    p.add_argument("--out", required=True, help="folder for model/ and corpus/")
    p.add_argument("--examples", type=int, help="corpus examples")
    p.add_argument("--shards", type=int, help="parquet files")
    p.add_argument("--distractors", type=int,
                   help="unrelated descriptors per example (long prompts of even length)")
    p.add_argument("--vocab-size", type=int, help="tokenizer vocabulary")
    a = p.parse_args(rest)
    if args.config or args.deepspeed or args.out or args.resume:
        p.error("give smoke-data's flags after the verb")

    from pathlib import Path

    from lte.align.smoke import write_smoke_corpus, write_smoke_model
    from lte.modeling.load import load_tokenizer

    def given(**kw):
        return {k: v for k, v in kw.items() if v is not None}

    out = Path(a.out)
    model = write_smoke_model(out / "model", **given(vocab_size=a.vocab_size))
    write_smoke_corpus(out / "corpus", load_tokenizer(str(model)),
                       **given(n=a.examples, shards=a.shards, distractors=a.distractors))
    print(f"{out / 'model'}\n{out / 'corpus'}", flush=True)
    return 0


VERBS = {"init-model": _init_model, "smoke-data": _smoke_data}
