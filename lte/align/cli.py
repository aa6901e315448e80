"""`lte align --config configs/align/<preset>.yaml [--deepspeed X.json] [--out DIR] [--resume]
[key=value ...]`: one process per device under a launcher (launch/align.sh, slurm/align.sh), or a
single plain process."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "align", help="align a chat model on a corpus (HF Trainer + DeepSpeed ZeRO)",
        description="Full fine-tuning on the parallel corpus; loss on answer tokens only. "
                    "Run one process per device with launch/align.sh or slurm/align.sh.")
    p.add_argument("--config", required=True, help="YAML preset, e.g. configs/align/tiny.yaml")
    p.add_argument("--deepspeed", help="DeepSpeed JSON (overrides the preset's deepspeed)")
    p.add_argument("--out", help="run folder (overrides the preset's out)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint in the run folder "
                        "(starts from step 0 when there is none)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. max_steps=10 wandb.project=lte")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import dataclasses

    from lte.config import AlignConfig, load_config

    cfg = load_config(AlignConfig, args.config, list(args.overrides))
    flags = {k: v for k, v in (("deepspeed", args.deepspeed), ("out", args.out)) if v}
    cfg = dataclasses.replace(cfg, **flags)

    from lte.align import distributed
    from lte.align.recipe import run_alignment

    final = run_alignment(cfg, resume=args.resume)
    if distributed.is_main():
        print(final, flush=True)
    distributed.shutdown()
    return 0
