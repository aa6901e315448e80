"""The evaluation recipe: load models and data, run every method x protocol x size, write reports.

`evaluate(editor, records)` is the one-call version for a ready editor (used by the demo).
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from lte.config import EvalConfig, save_config
from lte.data.record import EditRecord
from lte.errors import UserError
from lte.eval.methods import GoldContext, NoEdit, RetrievalMethod
from lte.eval.protocols import run_protocol
from lte.eval.scoring import ScoreOptions, pre_edit_locality


def evaluate(editor, records: Sequence[EditRecord], protocol: str = "batch",
             opts: ScoreOptions | None = None) -> dict:
    """LTE's metrics for `records` on a ready editor (its memory keeps what it held before).

    For `sequential` the keys of the `after_stream` phase are returned, and those of
    `after_insert` with that prefix.
    """
    opts = opts or ScoreOptions(max_new_tokens=editor.max_new_tokens)
    records = unique_case_ids(list(records))
    pre = pre_edit_locality(editor, records)
    phases = run_protocol(protocol, RetrievalMethod("lte", editor), records, pre, opts)
    out: dict = {}
    for ph in phases:
        metrics = ph.metrics()
        if ph.phase == "after_insert":
            out.update({f"after_insert_{k}": v for k, v in metrics.items()})
        else:
            out.update(metrics)
    out["n_cases"] = len(records)
    return out


def sample_records(records: list[EditRecord], seed: int) -> list[EditRecord]:
    """A seeded order; size N takes its first N, so smaller runs are prefixes of larger ones."""
    order = list(records)
    random.Random(seed).shuffle(order)
    return order


def _load_editor(name_or_cfg, cfg: EvalConfig, memory_dir: str):
    from lte.editor import LTEEditor
    from lte.memory import EditMemory
    from lte.modeling.load import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(name_or_cfg)
    memory = EditMemory.create(memory_dir, cfg.memory)
    memory.search(["warm-up"], k=1)  # loads the embedder now, not inside the first timed edit
    return LTEEditor(model, tokenizer, memory, top_k=cfg.memory.top_k,
                     batch_size=cfg.batch_size, max_new_tokens=cfg.model.max_new_tokens)


def build_methods(cfg: EvalConfig, tmp: str, log=print) -> list:
    """The configured methods; prompt-only needs `base_model` and is skipped (said) without."""
    from lte.eval.ftl import FTL

    methods: list = []
    wanted = list(dict.fromkeys(cfg.methods))
    aligned_names = [m for m in wanted if m != "prompt-only"]
    if aligned_names:
        editor = _load_editor(cfg.model, cfg, str(Path(tmp) / "memory-aligned"))
        for name in aligned_names:
            if name == "lte":
                methods.append(RetrievalMethod("lte", editor))
            elif name == "no-edit":
                methods.append(NoEdit(editor))
            elif name == "gold-context":
                methods.append(GoldContext(editor))
            elif name == "ft-l":
                methods.append(FTL(editor, cfg.ftl))
    if "prompt-only" in wanted:
        if cfg.base_model:
            from dataclasses import replace

            base_cfg = replace(cfg.model, name_or_path=cfg.base_model)
            base = _load_editor(base_cfg, cfg, str(Path(tmp) / "memory-base"))
            methods.append(RetrievalMethod("prompt-only", base))
        else:
            log("eval: prompt-only skipped: set base_model (the model before alignment)")
    return methods


def load_datasets(cfg: EvalConfig) -> dict[str, list[EditRecord]]:
    from lte.data.readers import read_records

    if not cfg.data:
        raise UserError("no edit data: give --data FILE (or data: [...] in the config)",
                        field="data")
    out = {}
    for path in cfg.data:
        records = read_records(path, format=cfg.data_format)
        if not records:
            raise UserError("no edit records in file", file=str(path))
        out[Path(path).stem] = unique_case_ids(records)
    return out


def unique_case_ids(records: list[EditRecord]) -> list[EditRecord]:
    """Scores are matched to cases by case_id, so a repeated id gets a `#n` suffix."""
    from dataclasses import replace

    seen: dict[str, int] = {}
    out = []
    for r in records:
        n = seen.get(r.case_id, 0)
        seen[r.case_id] = n + 1
        out.append(r if n == 0 else replace(r, case_id=f"{r.case_id}#{n}"))
    return out


def run_methods(methods: list, datasets: dict[str, list[EditRecord]], cfg: EvalConfig,
                log=print) -> list[dict]:
    """Result rows for every dataset x size x protocol x method (methods already built)."""
    opts = ScoreOptions(fluency_cases=cfg.fluency_cases, fluency_tokens=cfg.fluency_tokens,
                        max_new_tokens=cfg.model.max_new_tokens, hit_k=cfg.hit_k)
    runs: list[dict] = []
    for dataset, all_records in datasets.items():
        ordered = sample_records(all_records, cfg.seed)
        biggest = ordered[:max(cfg.sizes)]
        pre_cache: dict[int, dict] = {}
        for method in methods:
            key = id(method.editor)
            if key not in pre_cache:  # before any edit of this model
                pre_cache[key] = pre_edit_locality(method.editor, biggest)
        # N beyond the file is the whole file, reported with its real size.
        for size in sorted({min(s, len(ordered)) for s in cfg.sizes}):
            records = ordered[:size]
            for protocol in cfg.protocols:
                subset = records[:cfg.single_cases] if protocol == "single" else records
                for method in methods:
                    t0 = time.perf_counter()
                    phases = run_protocol(protocol, method, subset,
                                          pre_cache[id(method.editor)], opts)
                    for ph in phases:
                        runs.append({
                            "dataset": dataset, "method": method.name, "protocol": protocol,
                            "phase": ph.phase, "size": size, "n_cases": len(ph.cases),
                            "metrics": ph.metrics(),
                        })
                    log(f"eval: {dataset} N={size} {protocol} {method.name}: "
                        f"{_brief(phases[-1].metrics())} ({time.perf_counter() - t0:.1f}s)")
    return runs


def run_eval(cfg: EvalConfig, log=print) -> dict:
    """Every method x protocol x size x dataset; writes results.json/.md and plots to cfg.out."""
    from lte.eval import report

    out = Path(cfg.out)
    datasets = load_datasets(cfg)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out)
    with tempfile.TemporaryDirectory(prefix="lte-eval-") as tmp:
        methods = build_methods(cfg, tmp, log=log)
        try:
            runs = run_methods(methods, datasets, cfg, log=log)
        finally:
            for memory in {id(m.editor.memory): m.editor.memory for m in methods}.values():
                memory.close()
    results = {"config": asdict(cfg), "runs": runs}
    report.write_all(results, out)
    if cfg.wandb_project:
        report.log_wandb(results, cfg.wandb_project)
    return results


def _brief(metrics: dict) -> str:
    keys = ("edit_succ", "locality", "retrieval_hit1")
    return " ".join(f"{k}={metrics[k]:.3f}" for k in keys if metrics.get(k) is not None)
