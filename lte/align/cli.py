"""`lte align --config configs/align/<preset>.yaml [--deepspeed X.json] [--out DIR] [--resume]
[key=value ...]`: one process per device under a launcher (launch/align.sh, slurm/align.sh), or a
single plain process. Flags and overrides may come in any order."""

from __future__ import annotations

import argparse


def _add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--deepspeed", help="DeepSpeed JSON (overrides the preset's deepspeed)")
    p.add_argument("--out", help="run folder (overrides the preset's out)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint in the run folder "
                        "(starts from step 0 when there is none)")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "align", help="align a chat model on a corpus (HF Trainer + DeepSpeed ZeRO)",
        description="Full fine-tuning on the parallel corpus; loss on answer tokens only. "
                    "Run one process per device with launch/align.sh or slurm/align.sh.")
    p.add_argument("--config", required=True, help="YAML preset, e.g. configs/align/tiny.yaml")
    _add_flags(p)
    # REMAINDER keeps flags that follow an override (launchers append theirs after the user's)
    p.add_argument("overrides", nargs=argparse.REMAINDER, metavar="key=value",
                   help="config overrides, e.g. max_steps=10 wandb.project=lte")
    p.set_defaults(func=_run)


def _split(args) -> tuple[dict, bool, list[str]]:
    from lte.errors import UserError

    late = argparse.ArgumentParser(prog="lte align", add_help=False)
    _add_flags(late)
    flags, overrides = late.parse_known_args(args.overrides)
    bad = [o for o in overrides if o.startswith("-") or "=" not in o]
    if bad:
        raise UserError(f"unrecognized arguments: {' '.join(bad)} (flags: --config, --deepspeed, "
                        "--out, --resume; overrides look like key.sub=value)")
    fields = {k: getattr(flags, k) or getattr(args, k) for k in ("deepspeed", "out")}
    return {k: v for k, v in fields.items() if v}, flags.resume or args.resume, overrides


def _run(args) -> int:
    import dataclasses

    from lte.config import AlignConfig, load_config

    fields, resume, overrides = _split(args)
    cfg = dataclasses.replace(load_config(AlignConfig, args.config, overrides), **fields)

    from lte.align import distributed
    from lte.align.recipe import run_alignment

    final = run_alignment(cfg, resume=resume)
    if distributed.is_main():
        print(final, flush=True)
    return 0
