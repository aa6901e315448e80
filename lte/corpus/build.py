"""`lte corpus build`: sources -> parallel examples -> tokenized, sharded parquet + manifest.

The driver reads the (small) inputs, filters leakage and duplicates, and retrieves distractors;
the per-example work (original answers, construction, tokenization) runs as Ray Data stages, or
in this process with `engine="local"` (the same functions; the benchmark's baseline). Both give
byte-identical shards: every random choice is seeded by (seed, record id), and rows are sorted
by id before they are written.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa

from lte.config import CorpusConfig, save_config
from lte.corpus.answers import questions_to_answer
from lte.corpus.construct import (
    ConstructOptions,
    data_original_answer,
    edit_examples,
    in_scope_only,
    linguistic_examples,
)
from lte.corpus.distractors import distractors_by_descriptor, record_key, retrieve_distractors
from lte.corpus.reference_recipe import (
    ABSENT_SOURCES,
    questions_without_answers,
    reference_distractors,
    reference_examples,
    rule_of,
    select_records,
)
from lte.corpus.shards import Tokenize, examples_table, write_shards
from lte.corpus.sources import Inputs, load_inputs
from lte.data.record import QA, EditRecord
from lte.layout import MANIFEST, SHARD_GLOB, TOKENIZER_DIR, shard_name

WORLD_FILE = "world.json"
WORK_SCHEMA = pa.schema([("key", pa.string()), ("kind", pa.string()),
                         ("payload", pa.string()), ("distractors", pa.string())])


def construct_options(cfg: CorpusConfig) -> ConstructOptions:
    return ConstructOptions.from_config(cfg)


def work_items(inputs: Inputs, distractors: dict[str, list[str]],
               records: list[EditRecord] | None = None) -> list[dict]:
    """One row per edit record (default: all of `inputs`) and per instruction: what a
    construction task needs, as JSON."""
    records = inputs.records if records is None else records
    items = [{"key": record_key(r), "kind": "edit", "payload": json.dumps(r.to_dict()),
              "distractors": json.dumps(distractors.get(record_key(r), []))}
             for r in records]
    for source, instructions in inputs.instructions:
        for key, qa in instructions:
            items.append({"key": f"{source}:{key}", "kind": "instruction",
                          "payload": json.dumps({"source": source, "key": key,
                                                 "prompt": qa.prompt, "answers": qa.answers}),
                          "distractors": ""})
    return sorted(items, key=lambda item: item["key"])


class Construct:
    """Work rows -> example rows; a pure function of its arguments (a Ray Data map stage)."""

    def __init__(self, opts: ConstructOptions, unrelated: list[str],
                 distractors_of: dict[str, list[str]], answers: dict[str, str] | None = None,
                 rules: dict[str, str] | None = None):
        self.opts, self.unrelated, self.distractors_of = opts, unrelated, distractors_of
        self.answers = answers
        self.rules = rules  # recipe reference: source -> the notebook's rule; None: extended

    def original_answer(self, record: EditRecord, question: str) -> str | None:
        if self.answers is None:
            return data_original_answer(record, question)
        return self.answers.get(question) or None

    def __call__(self, batch: pa.Table) -> pa.Table:
        examples = []
        for row in batch.to_pylist():
            payload = json.loads(row["payload"])
            if row["kind"] == "edit":
                record = EditRecord.from_dict(payload)
                if self.rules is not None:
                    examples += reference_examples(record, self.rules[record.source],
                                                   json.loads(row["distractors"]), self.opts,
                                                   self.original_answer)
                else:
                    examples += edit_examples(record, json.loads(row["distractors"]),
                                              self.opts, self.original_answer)
            else:
                answer = (payload["answers"][0] if self.answers is None
                          else self.answers.get(payload["prompt"]))
                if not answer:
                    continue
                examples += linguistic_examples(
                    [(payload["key"], QA(payload["prompt"], [answer]))], self.unrelated,
                    self.opts, source=payload["source"], distractors_of=self.distractors_of)
        return examples_table(examples)


# --------------------------------------------------------------------------------------------
# Engines: the same stages in this process or as Ray Data operators
# --------------------------------------------------------------------------------------------


class LocalEngine:
    """Every stage in this process, one batch after another."""

    name = "local"

    def __init__(self, cfg: CorpusConfig):
        self.cfg = cfg

    def answers(self, questions: list[str]) -> dict[str, str]:
        from lte.corpus.answers import AnswerGenerator

        gen = AnswerGenerator(self.cfg.model)
        return dict(zip(questions, gen.answer(questions), strict=True))

    def examples(self, items: list[dict], construct: Construct, tokenizer) -> Iterator[pa.Table]:
        bs = self.cfg.batch_size
        tables = []
        tokenize = Tokenize(tokenizer) if tokenizer is not None else None
        for start in range(0, len(items), bs):
            t = construct(pa.Table.from_pylist(items[start:start + bs], schema=WORK_SCHEMA))
            tables.append(tokenize(t) if tokenize else t)
        if not tables:
            return iter(())
        return iter(pa.concat_tables(tables).sort_by("id").to_batches(max_chunksize=bs))

    def close(self) -> None:
        pass


class RayEngine:
    """Ray Data stages: answers (actors holding the model), construction (tasks),
    tokenization (actors holding the tokenizer), a global sort by id; local Ray or a cluster."""

    name = "ray"

    def __init__(self, cfg: CorpusConfig):
        import ray

        self.cfg = cfg
        self._own = not ray.is_initialized()
        if self._own:
            if cfg.ray_address:
                ray.init(address=cfg.ray_address, log_to_driver=False)
            else:
                _start_local_ray(cfg.num_cpus)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = True
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)

    def _dataset(self, items: list[dict], schema: pa.Schema):
        import ray

        blocks = max(1, min(4 * self.workers, len(items) // self.cfg.batch_size or 1))
        return ray.data.from_arrow(pa.Table.from_pylist(items, schema=schema)).repartition(blocks)

    def answers(self, questions: list[str]) -> dict[str, str]:
        from lte.corpus.answers import AnswerGenerator

        gpus = 1 if self.cfg.model.device != "cpu" and _cluster_gpus() else 0
        ds = self._dataset([{"question": q} for q in questions],
                           pa.schema([("question", pa.string())]))
        ds = ds.map_batches(AnswerGenerator, fn_constructor_kwargs={"model_cfg": self.cfg.model},
                            batch_format="pyarrow", batch_size=self.cfg.batch_size,
                            concurrency=(1, max(1, _cluster_gpus() if gpus else self.workers)),
                            num_gpus=gpus)
        return {row["question"]: row["answer"] for row in ds.iter_rows()}

    def examples(self, items: list[dict], construct: Construct, tokenizer) -> Iterator[pa.Table]:
        if not items:
            return iter(())
        ds = self._dataset(items, WORK_SCHEMA)
        ds = ds.map_batches(construct, batch_format="pyarrow", batch_size=self.cfg.batch_size)
        if tokenizer is not None:
            ds = ds.map_batches(Tokenize, fn_constructor_kwargs={"tokenizer": tokenizer},
                                batch_format="pyarrow", batch_size=self.cfg.batch_size,
                                concurrency=(1, self.workers))
        return ds.sort("id").iter_batches(batch_format="pyarrow", batch_size=self.cfg.batch_size)

    def close(self) -> None:
        import ray

        if self._own and ray.is_initialized():
            ray.shutdown()


def _start_local_ray(num_cpus: int, attempts: int = 3) -> None:
    """`ray.init` of a local instance, tried again when its raylet misses Ray's fixed 30 s
    start-up window (seen on an overloaded 2-core machine)."""
    import ray

    for attempt in range(1, attempts + 1):
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            return
        except Exception as e:  # Ray raises a plain Exception for this one case
            if "timed out during startup" not in str(e) or attempt == attempts:
                raise
            print(f"[corpus] local Ray did not start in time; retrying ({attempt}/{attempts})",
                  flush=True)
            ray.shutdown()


def _cluster_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


ENGINES = {"local": LocalEngine, "ray": RayEngine}


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def corpus_texts(inputs: Inputs) -> list[str]:
    """Every text the corpus is made of, to train a tokenizer on before the corpus exists."""
    from lte.prompts import EDIT_PROMPT_TEMPLATE

    texts = [EDIT_PROMPT_TEMPLATE]
    for r in inputs.records:
        texts += [r.prompt, r.target_new, *r.ground_truth, *r.rephrase_prompts]
        for kinds in (r.portability, r.locality):
            for qas in kinds.values():
                texts += [t for qa in qas for t in (qa.prompt, *qa.answers)]
    for _, instructions in inputs.instructions:
        texts += [t for _, qa in instructions for t in (qa.prompt, *qa.answers)]
    return texts


def resolve_tokenizer(cfg: CorpusConfig, inputs: Inputs, work_dir: Path):
    """The tokenizer named by `cfg.tokenizer` (None: no tokenization); `train` saves it."""
    if cfg.tokenizer is None:
        return None
    if cfg.tokenizer == "train":
        from lte.modeling.tiny import train_tokenizer

        tok = train_tokenizer(corpus_texts(inputs), cfg.tokenizer_vocab_size)
        tok.save_pretrained(str(work_dir / TOKENIZER_DIR))
        return tok
    from lte.modeling.load import load_tokenizer

    # The base model's chat format and remote-code setting (corpus.model) apply to the tokenizer
    # the corpus is tokenized with: the same family.
    return load_tokenizer(cfg.tokenizer, cfg.model.chat_format, cfg.model.trust_remote_code)


# --------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------


def _stage(name: str, t0: float) -> float:
    t = time.perf_counter()
    print(f"[corpus] {name} ({t - t0:.1f}s)", flush=True)
    return t


def build_corpus(cfg: CorpusConfig, out_dir: str | Path | None = None,
                 engine: str = "ray") -> dict:
    """Build the corpus into `out_dir` (default `cfg.out`); returns the manifest.

    Outputs are written into `out_dir/.building` and moved into place only at the end, so a
    failed build (bad record, interrupted run) leaves an earlier corpus there untouched.
    """
    out = Path(out_dir or cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / ".building"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    t = t0 = time.perf_counter()

    world = None
    if cfg.synth_edits > 0:
        from lte.data.synth import write_world

        world = work / WORLD_FILE
        write_world(world, cfg.synth_edits, cfg.synth_seed)
    inputs = load_inputs(cfg, str(world) if world else None)
    if world is not None:  # name the synthesised world by its place in the finished output
        inputs.hashes = {(WORLD_FILE if k == str(world) else k): v
                         for k, v in inputs.hashes.items()}
    t = _stage(f"{len(inputs.records)} records, "
               f"{sum(len(i) for _, i in inputs.instructions)} instructions", t)

    from lte.embedding import make_embedder

    opts = construct_options(cfg)
    encode = make_embedder(cfg.retriever).encode
    rules = reference = None
    records = inputs.records
    if cfg.recipe == "reference":
        rules = {name: rule_of(name, fmt) for name, fmt in sorted(inputs.formats.items())}
        distractors = reference_distractors(inputs.records, encode)
        records, selected = select_records(inputs.records, rules, opts)
        reference = {"rules": selected, "distractors": "keyed on the descriptor, one pool per "
                     "source, one draw per record for all its questions, the true fact alone "
                     "when too few candidates", "bare_answers_the_files_lack":
                     "base model (the notebook: GPT-4)" if cfg.answers == "model"
                     else "none: no bare twin", "absent_reference_sources": ABSENT_SOURCES}
    else:
        distractors = retrieve_distractors(inputs.records, encode, cfg.distractor_candidates)
    t = _stage("distractors retrieved", t)
    tokenizer = resolve_tokenizer(cfg, inputs, work)
    items = work_items(inputs, distractors, records)

    runner = ENGINES[engine](cfg)
    try:
        answers = None
        if cfg.answers == "model":
            instructions = [qa for _, group in inputs.instructions for qa in group]
            questions = (questions_to_answer(records, instructions, opts) if rules is None else
                         sorted({*questions_without_answers(records, rules, opts),
                                 *(qa.prompt for qa in instructions)}))
            answers = runner.answers(questions)
            t = _stage(f"{len(answers)} original answers generated", t)
        construct = Construct(opts, sorted({r.descriptor for r in records}),
                              distractors_by_descriptor(records, distractors), answers, rules)
        stats = write_shards(runner.examples(items, construct, tokenizer), work, cfg.shards,
                             cfg.row_group_size)
    finally:
        runner.close()
    t = _stage(f"{stats.examples} examples written in {cfg.shards} shards", t)

    original = (data_original_answer if answers is None
                else (lambda _r, q: answers.get(q) or None))
    manifest = {
        "format": "lte-corpus/1",
        **stats.to_dict(),
        "records": {
            "read": dict(sorted(inputs.read.items())),
            "used": dict(sorted(_count_sources(records).items())),
            "empty_target_skipped": inputs.empty_targets,
            "duplicates_dropped": inputs.duplicates,
            "dropped_for_leakage": dict(sorted(inputs.leakage.items())),
            "dropped_for_leakage_total": inputs.leakage_total,
            # questions (and records) naming an evaluation subject, by source and capability
            "dropped_for_leakage_by_text": inputs.text_leakage.to_dict(),
            "in_scope_only": sum(1 for r in records if in_scope_only(r, original)),
        },
        "recipe": cfg.recipe,
        **({"reference": reference} if reference else {}),
        "instructions": {name: len(group) for name, group in inputs.instructions},
        "answers": cfg.answers,
        "tokenizer": cfg.tokenizer,
        "seed": cfg.seed,
        "inputs_sha256": dict(sorted(inputs.hashes.items())),
        "config": asdict(cfg),
    }
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    save_config(cfg, work)
    _publish(work, out)
    _stage(f"done: {out} (total {time.perf_counter() - t0:.1f}s, engine {engine})", t)
    return manifest


def _count_sources(records: list[EditRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[r.source] = counts.get(r.source, 0) + 1
    return counts


def _publish(work: Path, out: Path) -> None:
    """Replace the previous corpus in `out` by the finished one in `work`."""
    for old in out.glob(SHARD_GLOB):
        old.unlink()
    shutil.rmtree(out / TOKENIZER_DIR, ignore_errors=True)
    (out / WORLD_FILE).unlink(missing_ok=True)
    for item in sorted(work.iterdir()):
        target = out / item.name
        if target.is_file():
            target.unlink()
        item.rename(target)
    work.rmdir()


__all__ = ["build_corpus", "shard_name", "work_items", "Construct", "ENGINES"]
