"""GPU check at the paper's shape: a LLaMA-2-7B-shaped model (fresh weights, the real sizes) under
ZeRO-3 and ZeRO-3 + CPU offload on one GPU; padded vs packed, micro batch sweep, gradient
checkpointing on/off. Prints tokens/s/GPU, MFU and peak GPU memory per setting; writes JSON.

    tools/gpu_align_7b.sh OUTDIR                          # on a GPU machine (installs wheels)
    python tools/gpu_align_7b.py --dry-run --work /tmp/g  # tiny shape on CPU: the same code path
    SETTINGS="zero3:packed:16:ckpt zero3:packed:32:ckpt" tools/gpu_align_7b.sh OUTDIR

A setting is `DEEPSPEED:PACKING:MICRO_BATCH:CKPT` (zero3 | zero3_offload, padded | packed,
sequences per micro batch, ckpt | nockpt); each runs `launch/align.sh` with NPROC=1 for --steps
optimizer steps (global batch = micro batch), on a smoke corpus whose prompt lengths are skewed
like knowedit's. The 7B shape is tried at 32 layers first; when the first setting does not fit,
at 24, then 16 (the depth used is printed and written). An offload setting whose DeepSpeed CPU
Adam cannot be built there reruns with torch's AdamW on the CPU (slower; said in the table).
Each setting builds the model afresh (minutes at 7B, not yet timed); where one call is limited
(the lent GPU machine: 10 minutes a command), split the plan over calls with SETTINGS.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LLAMA2_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
             "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096,
             "tie_word_embeddings": False}
TINY = {"hidden_size": 64, "intermediate_size": 192, "num_attention_heads": 4,
        "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 256,
        "tie_word_embeddings": False}
DEPTHS, TINY_DEPTH = (32, 24, 16), 2
PLAN = ("zero3:padded:8:ckpt zero3:packed:8:ckpt zero3:packed:16:ckpt zero3:packed:32:ckpt "
        "zero3:padded:16:nockpt zero3:packed:16:nockpt zero3:packed:32:nockpt "
        "zero3_offload:packed:16:ckpt")
DRY_PLAN = "zero3:padded:4:ckpt zero3_offload:packed:4:nockpt"


def parse_setting(text: str) -> dict:
    try:
        ds, packing, micro, ckpt = text.split(":")
        assert ds in ("zero3", "zero3_offload") and packing in ("padded", "packed")
        assert ckpt in ("ckpt", "nockpt") and int(micro) > 0
    except (ValueError, AssertionError):
        sys.exit(f"setting '{text}' is not DEEPSPEED:PACKING:MICRO:CKPT, e.g. zero3:packed:16:ckpt")
    return {"name": text, "deepspeed": ds, "packing": packing, "micro": int(micro),
            "ckpt": ckpt == "ckpt"}


def torch_adam_offload(work: Path, cpu: bool) -> Path:
    """The shipped offload config with torch's AdamW (DeepSpeed's CPU Adam is a compiled op)."""
    config = json.loads((REPO / "configs" / "deepspeed" / "zero3_offload.json").read_text())
    config["optimizer"]["params"]["torch_adam"] = True
    config["zero_force_ds_cpu_optimizer"] = False
    if cpu:  # the dry run: fp32, nothing to pin without CUDA
        config["bf16"] = {"enabled": False}
        for part in ("offload_param", "offload_optimizer"):
            config["zero_optimization"][part]["pin_memory"] = False
    path = work / "zero3_offload_torch_adam.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def summarize(run: Path, skip: int) -> dict:
    from lte.layout import read_meta

    logs = read_meta(run)["loss_history"]
    late = [h for h in logs if h["step"] > skip] or logs

    def median(key):
        values = [h[key] for h in late if key in h]
        return round(statistics.median(values), 4) if values else None

    peaks = [h["peak_gpu_mem_gib"] for h in logs if "peak_gpu_mem_gib" in h]
    return {"tokens_per_s_per_gpu": median("tokens_per_s"),
            "computed_tokens_per_s": median("computed_tokens_per_s"), "mfu": median("mfu"),
            "peak_gpu_mem_gib": max(peaks) if peaks else None, "steps": len(logs),
            "loss_last": logs[-1]["loss"] if logs else None}


def last_error(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines()
             if "Error" in ln or "error:" in ln]
    return (lines[-1].strip() if lines else "failed (see the log)")[:160]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny shape, CPU, 2 steps")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--skip", type=int, default=3, help="warm-up steps left out of the medians")
    ap.add_argument("--layers", type=int, help="one depth instead of trying 32, 24, 16")
    ap.add_argument("--run-limit-s", type=int, default=300, help="wall limit of one setting")
    ap.add_argument("--work", help="scratch folder (default: a temp dir)")
    ap.add_argument("--out", help="folder to copy the JSON report into")
    args = ap.parse_args()

    dry = args.dry_run
    steps = 2 if dry else args.steps
    skip = 0 if dry else args.skip
    plan = [parse_setting(s) for s in os.environ.get("SETTINGS", DRY_PLAN if dry else PLAN).split()]
    depths = [args.layers] if args.layers else ([TINY_DEPTH] if dry else list(DEPTHS))
    shape = TINY if dry else LLAMA2_7B
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-align-7b-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from lte.align.smoke import write_smoke_corpus, write_smoke_model
    from lte.layout import META_FILE
    from lte.modeling.load import load_tokenizer

    model = write_smoke_model(work / "model", vocab_size=512)
    corpus = write_smoke_corpus(work / "corpus", load_tokenizer(str(model)), n=4096,
                                max_distractors=12)
    device = ["device=cpu", "precision=fp32", "model.dtype=float32", "torch_threads=1"] if dry \
        else ["device=cuda", "precision=bf16", "model.dtype=bfloat16", "torch_threads=null"]
    base_ds = {"zero3": REPO / "configs" / "deepspeed" / ("zero3_cpu.json" if dry else "zero3.json"),
               "zero3_offload": torch_adam_offload(work, cpu=True) if dry
               else REPO / "configs" / "deepspeed" / "zero3_offload.json"}
    env = {**os.environ, "NPROC": "1"}

    def run(setting: dict, layers: int, ds_config: Path) -> tuple[bool, Path, Path]:
        out = work / f"run-{setting['name'].replace(':', '-')}-{layers}L-{ds_config.stem}"
        log = out.with_suffix(".log")
        arch = [f"architecture.{k}={str(v).lower() if isinstance(v, bool) else v}"
                for k, v in {**shape, "num_hidden_layers": layers}.items()]
        cmd = [str(REPO / "launch" / "align.sh"), "configs/align/tiny.yaml", "--out", str(out),
               "--deepspeed", str(ds_config), f"corpus={corpus}", f"model.name_or_path={model}",
               "init=scratch", *arch, *device, f"micro_batch_size={setting['micro']}",
               f"global_batch_size={setting['micro']}", f"max_steps={steps}",
               "save_steps=1000000", "logging_steps=1", "verify_save=false", "lr=1e-5",
               "warmup_ratio=0.0", "lr_scheduler=constant", "max_length=2048", "wandb.project=null",
               f"gradient_checkpointing={str(setting['ckpt']).lower()}",
               "packing=" + ("padding_free" if setting["packing"] == "packed" else "none")]
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                rc = proc.wait(timeout=args.run_limit_s)
            except subprocess.TimeoutExpired:
                # the whole session: torchrun's workers would otherwise keep the GPU's memory
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rc = -1
        return rc == 0 and (out / META_FILE).is_file(), out, log

    results, layers = [], None
    for setting in plan:
        t0 = time.perf_counter()
        tries = [layers] if layers else depths
        for depth in tries:
            ok, out, log = run(setting, depth, base_ds[setting["deepspeed"]])
            note = ""
            if not ok and setting["deepspeed"] == "zero3_offload" and not dry:
                ok, out, log = run(setting, depth, torch_adam_offload(work, cpu=False))
                note = "torch AdamW on CPU (DeepSpeed CPU Adam unavailable)"
            if ok:
                layers = depth
                break
            if "out of memory" not in log.read_text(errors="replace"):
                break  # a shallower model only helps when this one did not fit
        row = {**setting, "layers": depth, "wall_s": round(time.perf_counter() - t0, 1),
               "note": note, "log": str(log)}
        row.update(summarize(out, skip) if ok else {"error": last_error(log)})
        results.append(row)
        print(json.dumps(row), flush=True)

    print(f"\nLLaMA-2-7B shape{' (dry run: tiny shape, CPU)' if dry else ''}: "
          f"{layers or '?'} layers, {steps} steps per setting, one process")
    print(f"{'setting':32s} {'tokens/s/GPU':>12s} {'MFU':>6s} {'peak GiB':>9s} {'padding':>8s}  note")
    for r in results:
        if "error" in r:
            print(f"{r['name']:32s} {'failed':>12s}  {r['error']}")
            continue
        tps, comp = r["tokens_per_s_per_gpu"], r["computed_tokens_per_s"]
        pad = f"{1 - tps / comp:.0%}" if tps and comp else "?"
        mfu = f"{r['mfu']:.3f}" if r["mfu"] is not None else "-"
        mem = f"{r['peak_gpu_mem_gib']:.1f}" if r["peak_gpu_mem_gib"] is not None else "-"
        print(f"{r['name']:32s} {tps or 0:12.0f} {mfu:>6s} {mem:>9s} {pad:>8s}  {r['note']}")
    report = {"dry_run": dry, "layers": layers, "shape": shape, "steps": steps, "results": results}
    (work / "gpu_align_7b.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_align_7b.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
