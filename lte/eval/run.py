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

from lte.config import EvalConfig, ModelConfig, save_config
from lte.data.record import EditRecord
from lte.errors import UserError
from lte.eval.aggregate import AGGREGATIONS
from lte.eval.formats import method_format
from lte.eval.methods import RetrievalMethod
from lte.eval.protocols import run_protocol
from lte.eval.registry import METHODS, check_names, method_names
from lte.eval.scoring import ScoreOptions, pre_edit_locality


def evaluate(editor, records: Sequence[EditRecord], protocol: str = "batch",
             opts: ScoreOptions | None = None) -> dict:
    """LTE's metrics for `records` on a ready editor (its memory keeps what it held before).

    For `sequential` the keys of the `after_stream` phase are returned, and those of
    `after_insert` with that prefix.
    """
    if opts is None:  # the evaluation defaults, with the editor's own answer length
        opts = ScoreOptions.from_config(
            EvalConfig(model=ModelConfig(max_new_tokens=editor.max_new_tokens)))
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
    """The configured methods (`lte.eval.registry`). prompt-only runs on `base_model` and is
    skipped (said) without; the editing baselines edit `baseline_model` (base: the paper's
    setting, the aligned model, said, when base_model is unset)."""
    from dataclasses import replace

    from lte.prompts import CHAT

    if cfg.backend == "serve":
        from lte.eval.remote import build_remote_methods

        return build_remote_methods(cfg, log=log)
    fmt = replace(CHAT, variant=cfg.prompt_variant)
    wanted = [(name, METHODS[name]) for name in method_names(cfg)]
    baselines = [name for name, entry in wanted if entry.model == "baseline"]
    baseline_on = "base" if cfg.baseline_model == "base" and cfg.base_model else "aligned"
    if baselines and cfg.baseline_model == "base" and not cfg.base_model:
        log(f"eval: {', '.join(baselines)} edit the aligned model: set base_model for the "
            "model before alignment (the paper's setting)")
    editors: dict[str, object] = {}

    def editor(which: str):
        if which not in editors:
            model_cfg = (replace(cfg.model, name_or_path=cfg.base_model) if which == "base"
                         else cfg.model)
            editors[which] = _load_editor(model_cfg, cfg, str(Path(tmp) / f"memory-{which}"))
        return editors[which]

    methods: list = []
    for name, entry in wanted:
        which = baseline_on if entry.model == "baseline" else entry.model
        if which == "base" and not cfg.base_model:
            log(f"eval: {name} skipped: set base_model (the model before alignment)")
            continue
        methods.append(entry.build(editor(which), cfg, fmt))
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
    opts = ScoreOptions.from_config(cfg)
    runs: list[dict] = []
    for dataset, all_records in datasets.items():
        ordered = sample_records(all_records, cfg.seed)
        biggest = ordered[:max(cfg.sizes)]
        pre_cache: dict[tuple, dict] = {}
        for method in methods:
            key = _pre_key(method)
            if key not in pre_cache:  # before any edit of this model
                pre_cache[key] = pre_edit_locality(method.editor, biggest, method_format(method))
        for method in methods:
            if hasattr(method, "prepare"):  # per-file statistics (ROME's key covariance)
                method.prepare(all_records)
        # N beyond the file is the whole file, reported with its real size.
        for size in sorted({min(s, len(ordered)) for s in cfg.sizes}):
            records = ordered[:size]
            for protocol in cfg.protocols:
                subset = records[:cfg.single_cases] if protocol == "single" else records
                for method in methods:
                    t0 = time.perf_counter()
                    phases = run_protocol(protocol, method, subset,
                                          pre_cache[_pre_key(method)], opts)
                    for ph in phases:
                        for aggregation in AGGREGATIONS:
                            runs.append({
                                "dataset": dataset, "method": method.name,
                                "protocol": protocol, "phase": ph.phase, "size": size,
                                "aggregation": aggregation, "n_cases": len(ph.cases),
                                "metrics": ph.metrics(aggregation),
                            })
                    log(f"eval: {dataset} N={size} {protocol} {method.name}: "
                        f"{_brief(phases[-1].metrics())} ({time.perf_counter() - t0:.1f}s)")
    return runs


def _pre_key(method) -> tuple:
    """Pre-edit predictions depend on the model and on how its questions are encoded."""
    return id(method.editor), method_format(method)


def run_eval(cfg: EvalConfig, log=print) -> dict:
    """Every method x protocol x size x dataset; writes results.json/.md and plots to cfg.out."""
    from lte.eval import report

    check_names(cfg)
    out = Path(cfg.out)
    datasets = load_datasets(cfg)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out)
    with tempfile.TemporaryDirectory(prefix="lte-eval-") as tmp:
        methods = build_methods(cfg, tmp, log=log)
        editors = {id(m.editor): m.editor for m in methods}.values()
        try:
            runs = run_methods(methods, datasets, cfg, log=log)
            memory = _memory_size(editors, runs)
        finally:
            for editor in editors:
                editor.close()
    results = {"config": asdict(cfg), "runs": runs}
    report.write_all(results, out)
    if cfg.wandb_project:
        report.log_wandb(results, cfg.wandb_project, out, memory=memory)
    return results


MEMORY_SIZE_KEYS = ("live", "superseded", "deleted", "index_vectors", "disk_bytes")


def _memory_size(editors, runs: list[dict]) -> dict:
    """The memory's size for the W&B run: the most edits held at once, and what is stored now
    (deleted and superseded edits stay in the log) summed over the editors' memories."""
    out: dict = {"max_edits_held": max((r["size"] for r in runs), default=0)}
    for editor in editors:
        stats = editor.memory_stats()
        for key in MEMORY_SIZE_KEYS:
            if isinstance(stats.get(key), int):
                out[key] = out.get(key, 0) + stats[key]
    return out


def _brief(metrics: dict) -> str:
    keys = ("edit_succ", "locality", "retrieval_hit1")
    return " ".join(f"{k}={metrics[k]:.3f}" for k in keys if metrics.get(k) is not None)
