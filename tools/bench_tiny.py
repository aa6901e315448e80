"""Size and answer latency of a model on CPU, as a laptop user meets it.

    .venv/bin/python tools/bench_tiny.py [--model lte:tiny] [--threads 1] [--repeats 30]

Reports parameters, bytes on disk, load time, and the latency of one question answered with one
retrieved descriptor in the editing prompt (greedy, `max_new_tokens` as `lte serve` uses; p50 and
p95 over --repeats after a warm-up), beside the same question's teacher-forced scoring pass
(what `lte eval` runs per case). Baseline in the same run: the bare question (no descriptor),
so the ratio says what the editing prompt costs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

QUESTION = "Lake Baikal lies within the borders of which country?"
DESCRIPTOR = "In which country is Lake Baikal? Canada"


def _timed(fn, repeats: int) -> dict:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 2)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="lte:tiny")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ns = ap.parse_args(argv)

    import torch

    torch.set_num_threads(ns.threads)
    from lte.editor import LTEEditor
    from lte.modeling.load import load_model_and_tokenizer, resolve_model_path

    t0 = time.perf_counter()
    model, tok = load_model_and_tokenizer(ns.model)
    load_s = time.perf_counter() - t0
    folder = Path(resolve_model_path(ns.model))
    editor = LTEEditor(model, tok, None, top_k=None, batch_size=1, max_new_tokens=ns.max_new_tokens)
    answer = editor.answer([QUESTION], descriptors=[[DESCRIPTOR]])[0].text
    res = {
        "model": ns.model,
        "parameters": sum(p.numel() for p in model.parameters()),
        "disk_bytes": sum(f.stat().st_size for f in folder.iterdir() if f.is_file()),
        "load_s": round(load_s, 2),
        "threads": ns.threads,
        "answer": answer,
        "answer_with_descriptor": _timed(
            lambda: editor.answer([QUESTION], descriptors=[[DESCRIPTOR]]), ns.repeats),
        "answer_bare": _timed(lambda: editor.answer([QUESTION], descriptors=[[]]), ns.repeats),
        "score_with_descriptor": _timed(
            lambda: editor.score([QUESTION], ["Canada"], descriptors=[[DESCRIPTOR]]), ns.repeats),
        "machine": f"{os.cpu_count()} CPU cores, torch {torch.__version__}",
    }
    res["ratio_descriptor_vs_bare"] = round(
        res["answer_with_descriptor"]["p50_ms"] / res["answer_bare"]["p50_ms"], 2)
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
