"""Alignment throughput: DeepSpeed ZeRO-3 with 2 processes vs. a single-process Trainer, same
model, data and global batch, measured one after the other in one run; prints the ratio.

    nice -n 10 .venv/bin/python tools/bench_align.py --steps 30
    .venv/bin/python tools/bench_align.py --hidden 512 --layers 8 --nproc 8 --device cuda

Both runs go through the production entry points (`lte align` in one process, launch/align.sh
for the distributed one). Tokens/s is the median over logged steps after --skip warm-up steps of
non-padding tokens per second summed over processes (the Trainer gathers the counts). On CPU the
single process gets as many torch threads as the distributed run has processes, so both use the
same cores; the ratio is then the price (or gain) of partitioning and gloo communication.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tokens_per_s(run: Path, skip: int) -> tuple[float, list[float]]:
    from lte.layout import read_meta

    history = read_meta(run)["loss_history"]
    rates = [h["tokens_per_s"] for h in history if "tokens_per_s" in h and h["step"] > skip]
    return statistics.median(rates), [h["loss"] for h in history]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--skip", type=int, default=5, help="warm-up steps left out of the median")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--examples", type=int, default=1024)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--deepspeed", default="configs/deepspeed/zero3_cpu.json")
    ap.add_argument("--work", help="folder for the model, corpus and runs (default: a temp dir)")
    args = ap.parse_args()

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_MODE", "disabled")
    from lte.align.smoke import write_smoke_corpus, write_smoke_model
    from lte.modeling.load import load_tokenizer

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-align-"))
    model = write_smoke_model(work / "model", hidden_size=args.hidden, layers=args.layers)
    corpus = write_smoke_corpus(work / "corpus", load_tokenizer(str(model)), n=args.examples)
    common = [f"corpus={corpus}", f"model.name_or_path={model}", f"max_steps={args.steps}",
              f"global_batch_size={args.micro_batch * args.nproc}",
              f"micro_batch_size={args.micro_batch}", f"save_steps={args.steps * 10}",
              "logging_steps=1", "verify_save=false", f"device={args.device}",
              "precision=" + ("bf16" if args.device == "cuda" else "fp32"), "wandb.project=null"]
    env = {**os.environ, "NPROC": str(args.nproc), "OMP_NUM_THREADS": "1"}

    runs = {}
    single = work / "single"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lte", "align", "--config", "configs/align/tiny.yaml",
                    "--out", str(single), "deepspeed=null", f"torch_threads={args.nproc}",
                    *common], cwd=REPO, env=env, check=True)
    runs["single process, no DeepSpeed"] = (single, time.perf_counter() - t0)
    dist = work / "zero3"
    t0 = time.perf_counter()
    subprocess.run([str(REPO / "launch" / "align.sh"), "configs/align/tiny.yaml", "--out",
                    str(dist), "--deepspeed", args.deepspeed, "torch_threads=1", *common],
                   cwd=REPO, env=env, check=True)
    runs[f"ZeRO-3, {args.nproc} processes"] = (dist, time.perf_counter() - t0)

    print(f"\nmodel: hidden {args.hidden}, {args.layers} layers; {args.steps} steps of "
          f"{args.micro_batch * args.nproc} sequences; device {args.device}")
    print(f"{'run':34s} {'tokens/s':>10s} {'wall s':>8s} {'loss first -> last':>20s}")
    rates = {}
    for name, (path, wall) in runs.items():
        rate, losses = tokens_per_s(path, args.skip)
        rates[name] = rate
        print(f"{name:34s} {rate:10.0f} {wall:8.1f} {losses[0]:9.3f} -> {losses[-1]:.3f}")
    base, zero3 = rates.values()
    print(f"ratio ZeRO-3 / single process: {zero3 / base:.2f}")
    (work / "bench.json").write_text(json.dumps({"tokens_per_s": rates, "ratio": zero3 / base,
                                                 "args": vars(args)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
