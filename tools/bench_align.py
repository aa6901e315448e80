"""Alignment throughput: padded, length-grouped and padding-free packed micro batches (and padded with
the LM head over every position, `head_positions: all`, against the default `labels`), each in a
single-process Trainer and under DeepSpeed ZeRO-3 over 2 processes; same model, corpus, steps and
global batch, measured one after the other in one run; prints and writes the ratios.

    nice -n 10 .venv/bin/python tools/bench_align.py --steps 30
    .venv/bin/python tools/bench_align.py --corpus runs/corpus-tiny --model lte:tiny
    .venv/bin/python tools/bench_align.py --hidden 512 --layers 8 --nproc 8 --device cuda

Every run goes through the production entry points (`lte align` in one process, launch/align.sh
for the distributed ones). Per run: useful tokens/s (non-padding tokens, what training learns
from) and computed tokens/s (padding included, what the hardware pays for), each the median over
logged steps after --skip warm-up steps, summed over processes. On CPU the single process gets as
many torch threads as the distributed run has processes, so every run uses the same cores. The
loss curves of packed vs padded (same examples in the same order) say whether packing changes
what is learned; grouped runs see the examples in another order, so their curve differs by noise.

The default corpus is the smoke corpus with skewed prompt lengths (`max_distractors`), shaped
like the knowedit corpus (most examples short, a long tail); --corpus takes a built one instead.
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
VARIANTS = {"full-head": ["packing=none", "group_by_length=false", "head_positions=all"],
            "padded": ["packing=none", "group_by_length=false"],
            "grouped": ["packing=none", "group_by_length=true"],
            "packed": ["packing=padding_free", "group_by_length=false"]}


def summary(run: Path, skip: int) -> dict:
    from lte.layout import read_meta

    logs = read_meta(run)["loss_history"]  # the run folder's lte_meta.json (as final/'s)
    late = [h for h in logs if h["step"] > skip]
    useful = statistics.median(h["tokens_per_s"] for h in late if "tokens_per_s" in h)
    computed = statistics.median(h["computed_tokens_per_s"] for h in late
                                 if "computed_tokens_per_s" in h)
    return {"useful_tokens_per_s": round(useful, 1), "computed_tokens_per_s": round(computed, 1),
            "padding_share": round(1 - useful / computed, 3), "losses": [h["loss"] for h in logs]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--skip", type=int, default=5, help="warm-up steps left out of the median")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--examples", type=int, default=2048)
    ap.add_argument("--max-distractors", type=int, default=12,
                    help="smoke corpus: the cap of the skewed descriptor count per prompt")
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--corpus", help="built corpus shards (default: a generated smoke corpus)")
    ap.add_argument("--model", default="lte:tiny", help="with --corpus: its model/tokenizer")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--deepspeed", default="configs/deepspeed/zero3_cpu.json")
    ap.add_argument("--only", choices=("single", "zero3"), help="one of the two settings")
    ap.add_argument("--work", help="folder for the model, corpus and runs (default: a temp dir)")
    args = ap.parse_args()

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_MODE", "disabled")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-align-"))
    if args.corpus:
        corpus, model = Path(args.corpus), args.model
    else:
        from lte.align.smoke import write_smoke_corpus, write_smoke_model
        from lte.modeling.load import load_tokenizer

        model = write_smoke_model(work / "model", hidden_size=args.hidden, layers=args.layers)
        corpus = write_smoke_corpus(work / "corpus", load_tokenizer(str(model)),
                                    n=args.examples, max_distractors=args.max_distractors)
    common = [f"corpus={corpus}", f"model.name_or_path={model}", f"max_steps={args.steps}",
              f"global_batch_size={args.micro_batch * args.nproc}",
              f"micro_batch_size={args.micro_batch}", f"save_steps={args.steps * 10}",
              "logging_steps=1", "verify_save=false", f"device={args.device}",
              "precision=" + ("bf16" if args.device == "cuda" else "fp32"), "wandb.project=null"]
    env = {**os.environ, "NPROC": str(args.nproc), "OMP_NUM_THREADS": "1"}
    settings = {"single": ([sys.executable, "-m", "lte", "align", "--config",
                            "configs/align/tiny.yaml"], ["deepspeed=null",
                                                         f"torch_threads={args.nproc}"]),
                "zero3": ([str(REPO / "launch" / "align.sh"), "configs/align/tiny.yaml"],
                          ["--deepspeed", args.deepspeed, "torch_threads=1"])}
    if args.only:
        settings = {args.only: settings[args.only]}

    results: dict = {}
    for setting, (cmd, extra) in settings.items():
        for variant, knobs in VARIANTS.items():
            out = work / f"{setting}-{variant}"
            t0 = time.perf_counter()
            subprocess.run([*cmd, "--out", str(out), *extra, *common, *knobs], cwd=REPO,
                           env=env, check=True)
            results[f"{setting}/{variant}"] = {**summary(out, args.skip),
                                               "wall_s": round(time.perf_counter() - t0, 1)}

    shape = model if args.corpus else f"hidden {args.hidden}, {args.layers} layers"
    print(f"\nmodel: {shape}"
          f"; corpus {corpus}; {args.steps} steps of {args.micro_batch * args.nproc} sequences "
          f"(micro batch {args.micro_batch}); device {args.device}")
    print(f"{'run':16s} {'useful tok/s':>12s} {'computed tok/s':>14s} {'padding':>8s} "
          f"{'wall s':>7s} {'loss first -> last':>20s}")
    for name, r in results.items():
        print(f"{name:16s} {r['useful_tokens_per_s']:12.0f} {r['computed_tokens_per_s']:14.0f} "
              f"{r['padding_share']:8.1%} {r['wall_s']:7.1f} "
              f"{r['losses'][0]:9.3f} -> {r['losses'][-1]:.3f}")
    ratios = {}
    for setting in settings:
        base = results[f"{setting}/padded"]
        for variant in ("grouped", "packed"):
            r = results[f"{setting}/{variant}"]
            ratios[f"{setting}: {variant} / padded, useful tokens/s"] = round(
                r["useful_tokens_per_s"] / base["useful_tokens_per_s"], 3)
        full = results[f"{setting}/full-head"]
        ratios[f"{setting}: head at labels / full head (padded), useful tokens/s"] = round(
            base["useful_tokens_per_s"] / full["useful_tokens_per_s"], 3)
        ratios[f"{setting}: head at labels vs full head, max |loss difference|"] = round(
            max(abs(a - b) for a, b in zip(full["losses"], base["losses"], strict=True)), 5)
        packed = results[f"{setting}/packed"]
        ratios[f"{setting}: packed vs padded, max |loss difference|"] = round(
            max(abs(a - b) for a, b in zip(packed["losses"], base["losses"], strict=True)), 5)
    if len(settings) == 2:
        for variant in VARIANTS:
            ratios[f"zero3 / single, {variant}, useful tokens/s"] = round(
                results[f"zero3/{variant}"]["useful_tokens_per_s"]
                / results[f"single/{variant}"]["useful_tokens_per_s"], 3)
    for name, value in ratios.items():
        print(f"{name}: {value}")
    report = {"runs": results, "ratios": ratios, "args": vars(args)}
    (work / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {work / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
