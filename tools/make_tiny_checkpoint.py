"""Recipe for the shipped pre-aligned tiny checkpoint (lte/assets/tiny-lte).

    .venv/bin/python tools/make_tiny_checkpoint.py --out lte/assets/tiny-lte [key=value ...]
    .venv/bin/python tools/make_tiny_checkpoint.py --out lte/assets/tiny-lte --eval-only

The settings are a YAML recipe (--recipe, default configs/recipe/tiny.yaml) loaded into
`RecipeConfig` by `lte.config.load_config`, with `key.sub=value` overrides. Reads top to bottom:
synthetic world, and the real training sources of `real_corpus` (read and leakage-filtered by the
corpus stage's `load_inputs`) -> parallel examples (lte.corpus.construct, distractors from the
corpus stage's MiniLM top-5 of other subjects) -> byte-level BPE trained on that text -> tiny
LLaMA -> training with held-out evaluation every `eval_every` steps (synthetic held-out people,
and real development edits, `real_dev`) -> the best checkpoint, with the command, data seeds and
measured figures in lte_meta.json.

Held-out evaluation is the embedded default's protocol, computed by `lte eval`'s code (an
`EditMemory` with MiniLM keys holding all held-out edits, `LTEEditor`, `lte.eval.scoring`):
edits of people who are not in the training world, asked with paraphrased questions, each
query's descriptor retrieved top-1 from the memory.
  edit_succ  teacher-forced token accuracy of target_new after the editing prompt (EasyEdit;
             `lte eval`'s rephrase_succ);
  edit_em    all target tokens right (names with predictable endings inflate token accuracy);
  fresh_*    the same with targets replaced by made-up names never seen in training;
  locality   fraction of answer tokens of locality questions whose argmax with the retrieved
             descriptor equals the argmax without any edit (`lte eval`'s locality);
  gated_*    the same with the memory's relevance gate at `gate` (a question whose best hit is
             below it is asked bare);
  real_*     Edit Succ (rewrite question), rephrase and locality of the real development edits,
             each retrieved from a memory of all of them (`lte eval`'s batch protocol).

What is the recipe's own is the curriculum, in a plain PyTorch loop rather than the HF Trainer
(lte.align): an auxiliary all-token loss that is switched off after a warm-up (it grows the
copying circuit early), and batches drawn with fixed shares per capability from data regenerated
with fresh objects as training goes on (so memorising an edit never pays and only copying from
the context does): made-up names for the world's people, other records' answers for the real
edits. The Trainer gives neither cheaply.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lte.align.checkpoint import code_version  # noqa: E402
from lte.config import (  # noqa: E402
    CorpusConfig,
    CorpusSource,
    EmbedderConfig,
    MemoryConfig,
    load_config,
)
from lte.corpus.construct import (  # noqa: E402
    LINGUISTIC,
    OUT_OF_SCOPE,
    ConstructOptions,
    edit_examples,
    linguistic_examples,
)
from lte.corpus.distractors import record_key, retrieve_distractors  # noqa: E402
from lte.data.record import EditRecord  # noqa: E402
from lte.data.synth import (  # noqa: E402
    RELATION_INDEX,
    RELATIONS,
    World,
    fresh_object,
    generate_world,
    synth_records,
    to_edit_record,
    world_instructions,
)
from lte.editor import LTEEditor  # noqa: E402
from lte.embedding import Embedder  # noqa: E402
from lte.eval import metrics  # noqa: E402
from lte.eval.methods import RetrievalMethod  # noqa: E402
from lte.eval.scoring import ScoreOptions, pre_edit_locality, score_cases  # noqa: E402
from lte.layout import read_meta, write_meta  # noqa: E402
from lte.memory import EditMemory  # noqa: E402
from lte.modeling.batching import PadCollator  # noqa: E402
from lte.modeling.tiny import (  # noqa: E402
    TinyModelConfig,
    build_tiny_model,
    count_parameters,
    save_tiny,
    train_tokenizer,
)
from lte.prompts import IGNORE_INDEX, tokenize_chat  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "recipe" / "tiny.yaml"
BUCKETS = ("in", "port", "out", "bare", "ling")
REAL_BUCKETS = ("real", "real_out")  # edits of the real training sources (`real_corpus`)
REAL_MAX_CHARS = 160  # real descriptors longer than this (WikiBio passages) are left out
# Teacher-forced scoring only: no fluency sample, a one-token answer for exact match.
SCORE = ScoreOptions(hit_k=1, fluency_cases=0, fluency_tokens=1, max_new_tokens=1, fluency_seed=0)


@dataclass
class RecipeConfig:
    """Fields are described in configs/recipe/tiny.yaml, the shipped recipe."""

    seed: int = 1
    eval_seed: int = 1001
    train_edits: int = 1000
    eval_edits: int = 200
    final_eval_edits: int = 1000
    unknown_people: int = 1000
    fresh_share: float = 0.7
    mix: dict[str, float] = field(default_factory=lambda: {
        "in": 0.35, "port": 0.03, "out": 0.40, "bare": 0.12, "ling": 0.10})
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    steps: int = 6000
    batch_size: int = 32
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 200
    aux_steps: int = 600
    aux_weight: float = 0.5
    weight_decay: float = 0.01
    eval_every: int = 500
    threads: int = 1
    max_minutes: float = 0.0
    stop_at: int = 0
    gate: float = 0.84
    real_corpus: str | None = None
    real_edits: int = 0
    real_fresh_share: float = 0.8
    real_object_share: float = 0.0
    real_dev: str | None = None
    real_dev_edits: int = 200
    real_final_edits: int = 500
    real_weight: float = 1.0


# --------------------------------------------------------------------------------------------
# Data: training variants of the world and their examples
# --------------------------------------------------------------------------------------------


def distractor_indices(embedder: Embedder, records: list[EditRecord], k: int = 5) -> list[list[int]]:
    """Per edit, its top-k edits of OTHER subjects (the corpus stage's retrieval), as indices, so
    that each training variant can show those edits with its own new objects."""
    by_key = retrieve_distractors(records, embedder.encode, k)
    index = {r.descriptor: i for i, r in enumerate(records)}
    return [[index[d] for d in by_key[record_key(r)]] for r in records]


def variant(world: World, base: list[EditRecord], v: int, cfg: RecipeConfig,
            real_pool: list[str] | None = None) -> list[EditRecord]:
    """The training edits with new objects drawn afresh for variant v (a share of the made-up
    ones replaced by real answers from `real_pool`, so real words are copied after the world's
    questions too)."""
    rng = random.Random(f"{cfg.seed}:{world.seed}:variant:{v}")
    out = []
    for rec in base:
        r = RELATION_INDEX[_relation(rec)]
        i = int(rec.case_id.split(":")[-1])
        target = fresh_object(r, rng) if rng.random() < cfg.fresh_share else None
        if target is not None and real_pool and cfg.real_object_share > 0 \
                and rng.random() < cfg.real_object_share:
            target = rng.choice(real_pool)
        portability = {}
        if target is None:
            pool = RELATIONS[r].pool
            person = None
            if pool is None:
                person = world.spouse_index(i) + 1 + rng.randrange(1, 1 << 30)
                target = world.name(person)
            else:
                target = rng.choice([o for o in pool if o != rec.ground_truth[0]])
            hop = world.hop_answer(r, target, person)
            portability = {k: [replace(qa, answers=[hop]) for qa in qas]
                           for k, qas in rec.portability.items()}
        out.append(replace(rec, target_new=target, portability=portability))
    return out


def _relation(rec: EditRecord) -> str:
    for rel in RELATIONS:
        if rel.templates[0].format(s=rec.subject) == rec.prompt:
            return rel.name
    raise ValueError(f"not a world record: {rec.prompt}")


def bucket_of(ex) -> str:
    if ex.capability == LINGUISTIC:
        return "ling"
    if not ex.with_edit:
        return "bare"
    if ex.capability == OUT_OF_SCOPE:
        return "out"
    return "in" if "/in/q" in ex.id else "port"


class Batches:
    """Batches with fixed shares per bucket; in-scope examples are drawn without replacement and
    a new variant (new objects) is built when they run out."""

    def __init__(self, world, base, distractors, instructions, tokenizer, cfg: RecipeConfig,
                 real: RealEdits | None = None):
        self.world, self.base, self.distractors, self.real = world, base, distractors, real
        self.instructions, self.tok, self.cfg = instructions, tokenizer, cfg
        self.rng = random.Random(f"{cfg.seed}:batches")
        self.v = -1
        self.cache: dict[tuple, tuple[list[int], list[int]]] = {}
        self.checked = False
        self.by_relation: dict[str, list[int]] = {}
        for k, rec in enumerate(base):
            self.by_relation.setdefault(_relation(rec), []).append(k)
        self.buckets: dict[str, list] = real.buckets() if real else {}
        self.next_variant()

    def next_variant(self):
        self.v += 1
        pool = self.real.pool if self.real else None
        recs = variant(self.world, self.base, self.v, self.cfg, pool)
        descs = [r.descriptor for r in recs]
        pairs = [(rec, [descs[j] for j in nb])
                 for rec, nb in zip(recs, self.distractors, strict=True)]
        if self.cfg.unknown_people:
            # Held-out people are unknown to the model, so training must show unknown people
            # too: otherwise "recall the fact, else copy the context" fits the training data
            # as well as "copy only what the edit is about", and fails on new people.
            uworld = World(10_000_000 + self.cfg.seed * 100_000 + self.v)
            ubase = [replace(to_edit_record(d, source="synth-unknown"),
                             case_id=f"u{self.v}:{d['case_id']}")
                     for d in generate_world(self.cfg.unknown_people, uworld.seed)]
            for rec in variant(uworld, ubase, self.v, self.cfg, pool):
                # Distractors: the retrieved neighbours of a known edit of the same relation
                # (the same question template, as MiniLM's top-5 mostly are).
                k = self.rng.choice(self.by_relation[_relation(rec)])
                pairs.append((rec, [descs[k], *(descs[j] for j in self.distractors[k])][:5]))
        opts = ConstructOptions.from_config(CorpusConfig(seed=self.cfg.seed * 100_003 + self.v))
        buckets: dict[str, list] = {k: [] for k in BUCKETS}
        for rec, distractors in pairs:
            for ex in edit_examples(rec, distractors, opts):
                buckets[bucket_of(ex)].append(ex)
        for ex in linguistic_examples(self.instructions, descs, opts, source="synth-instr"):
            buckets["ling"].append(ex)
        self.rng.shuffle(buckets["in"])
        self.buckets.update(buckets)  # the real buckets are renewed on their own (draw)

    def _encode_many(self, exs) -> list[tuple[list[int], list[int]]]:
        """tokenize_chat for many examples, with one batched tokenizer call per side (the same
        ids as `tokenize_chat`, checked on the first batch): a per-example call costs more than
        the tiny model's training step."""
        keys = [tuple((m["role"], m["content"]) for m in ex.messages) for ex in exs]
        todo = [k for k, key in enumerate(keys) if key not in self.cache]
        if todo:
            prompts = [self.tok.apply_chat_template(list(exs[k].messages[:-1]), tokenize=False,
                                                    add_generation_prompt=True) for k in todo]
            answers = [exs[k].messages[-1]["content"] for k in todo]
            p_ids = self.tok(prompts, add_special_tokens=False)["input_ids"]
            a_ids = self.tok(answers, add_special_tokens=False)["input_ids"]
            eos = self.tok.eos_token_id
            for k, p, a in zip(todo, p_ids, a_ids, strict=True):
                a = [*a, eos]
                self.cache[keys[k]] = (list(p) + a, [IGNORE_INDEX] * len(p) + a)
            if not self.checked:
                for k in todo[:8]:
                    if tokenize_chat(self.tok, exs[k].messages) != self.cache[keys[k]]:
                        raise RuntimeError("batched tokenization differs from tokenize_chat")
                self.checked = True
        out = [self.cache[key] for key in keys]
        for ex, key in zip(exs, keys, strict=True):
            if (ex.with_edit and ex.capability != LINGUISTIC) or ex.source == "synth-unknown":
                self.cache.pop(key, None)  # unique per variant: keep only what recurs
        return out

    def draw(self) -> list[dict]:
        """One batch of tokenized examples ({"input_ids", "labels"})."""
        n = self.cfg.batch_size
        names = list(self.cfg.mix)
        counts = dict.fromkeys(names, 0)
        for name in self.rng.choices(names, weights=[self.cfg.mix[k] for k in names], k=n):
            counts[name] += 1
        if len(self.buckets["in"]) < counts["in"]:
            self.next_variant()
        if self.real and len(self.buckets["real"]) < counts.get("real", 0):
            self.buckets.update(self.real.buckets())
        items = []
        for name, c in counts.items():
            pool = self.buckets.get(name)
            if not pool or not c:
                continue
            fresh = name in ("in", "real")  # without replacement: each is one variant's object
            chosen = [pool.pop() for _ in range(c)] if fresh else self.rng.choices(pool, k=c)
            items += chosen
        return [{"input_ids": x, "labels": y} for x, y in self._encode_many(items)]


class RealEdits:
    """Edits of the real training sources (`real_corpus`: its sources, leakage-filtered against
    its evaluation files by the corpus stage's `load_inputs`), each variant with new objects
    drawn from the pool of the sources' own answers, so that copying a real-world answer out of
    the context pays and memorising one does not."""

    def __init__(self, cfg: RecipeConfig, embedder: Embedder):
        from lte.corpus.sources import WIKIBIO_FORMAT, load_inputs

        corpus = load_config(CorpusConfig, cfg.real_corpus, [])
        inputs = load_inputs(replace(corpus, derived_instructions=[], instructions=None))
        self.dropped = inputs.leakage_total
        self.records = [r for r in inputs.records
                        if inputs.formats[r.source] != WIKIBIO_FORMAT
                        and len(r.descriptor) <= REAL_MAX_CHARS]
        if cfg.real_edits:
            self.records = random.Random(cfg.seed).sample(
                self.records, min(cfg.real_edits, len(self.records)))
        self.pool = sorted({a for r in self.records for a in (r.target_new, *r.ground_truth)
                            if 0 < len(a) <= 40})
        self.distractors = distractor_indices(embedder, self.records)
        self.cfg, self.v = cfg, -1
        self.rng = random.Random(f"{cfg.seed}:real")

    def variant(self) -> list[EditRecord]:
        self.v += 1
        rng = random.Random(f"{self.cfg.seed}:real:variant:{self.v}")
        out = []
        for rec in self.records:
            if rng.random() < self.cfg.real_fresh_share:
                target = rng.choice(self.pool)
                while target == rec.target_new or target in rec.ground_truth:
                    target = rng.choice(self.pool)
                rec = replace(rec, target_new=target, portability={})
            out.append(rec)
        return out

    def buckets(self) -> dict[str, list]:
        """A fresh variant's examples: in-scope (and portability) and out-of-scope."""
        recs = self.variant()
        descs = [r.descriptor for r in recs]
        opts = ConstructOptions.from_config(CorpusConfig(seed=self.cfg.seed * 100_019 + self.v))
        out: dict[str, list] = {k: [] for k in REAL_BUCKETS}
        for rec, nb in zip(recs, self.distractors, strict=True):
            for ex in edit_examples(rec, [descs[j] for j in nb], opts):
                if ex.with_edit:  # bare twins would ask a tiny model to memorise world facts
                    out["real_out" if ex.capability == OUT_OF_SCOPE else "real"].append(ex)
        self.rng.shuffle(out["real"])
        return out

    def texts(self) -> list[str]:
        """Tokenizer training text: two variants' examples."""
        texts = []
        for _ in range(2):
            for exs in self.buckets().values():
                texts += [m["content"] for ex in exs for m in ex.messages]
        self.v = -1
        return texts


# --------------------------------------------------------------------------------------------
# Held-out evaluation, by lte eval's code
# --------------------------------------------------------------------------------------------


@dataclass
class HeldOut:
    """Held-out edits and their made-up-target twins, each stored in its own memory."""

    records: list[EditRecord]
    fresh: list[EditRecord]
    edits: RetrievalMethod  # the aligned model + a memory of `records`
    fresh_edits: RetrievalMethod  # the same model + a memory of `fresh`
    ids: dict[str, int]  # case_id -> memory id, in both memories
    fresh_ids: dict[str, int]


def _method(model, tok, records: list[EditRecord], embedder: Embedder, folder: str):
    memory = EditMemory.create(folder, MemoryConfig(embedder=embedder.cfg, top_k=1))
    editor = LTEEditor(model, tok, memory, top_k=1, batch_size=128, max_new_tokens=1)
    method = RetrievalMethod("lte", editor)
    return method, method.insert(records)


def build_heldout(model, tok, embedder: Embedder, cfg: RecipeConfig, n: int,
                  train_subjects: set, seed_offset: int = 0) -> HeldOut:
    recs = [r for r in synth_records(n + 50, cfg.eval_seed) if r.subject not in train_subjects][:n]
    rng = random.Random(f"{cfg.eval_seed}:fresh:{seed_offset}")
    fresh = []
    for r in recs:
        target = fresh_object(RELATION_INDEX[_relation(r)], rng) or r.target_new
        fresh.append(replace(r, target_new=target, portability={}, locality={}))
    root = tempfile.mkdtemp(prefix="tiny-heldout-")
    edits, ids = _method(model, tok, recs, embedder, f"{root}/edits")
    fresh_edits, fresh_ids = _method(model, tok, fresh, embedder, f"{root}/fresh")
    return HeldOut(recs, fresh, edits, fresh_edits, ids, fresh_ids)


def _rephrase_scores(cases: list[metrics.CaseResult]) -> list[float]:
    return [v for c in cases for v in c.rephrase]


def _locality_scores(cases: list[metrics.CaseResult]) -> list[float]:
    return [v for c in cases for vals in c.locality.values() for v in vals]


def _exact(values: list[float]) -> float | None:
    return metrics.mean(float(v == 1.0) for v in values)


def _score(method: RetrievalMethod, records, ids, pre=None,
           gate: float | None = None) -> list[metrics.CaseResult]:
    """Case results; with `gate`, under the memory's relevance gate at that threshold."""
    if gate is None:
        return score_cases(method, records, ids, pre or {}, SCORE)[0]
    memory = method.editor.memory
    memory.set_threshold(gate)
    try:
        return score_cases(method, records, ids, pre or {}, SCORE)[0]
    finally:
        memory.set_threshold(None)


def evaluate(model, held: HeldOut, gate: float | None = None) -> dict:
    """Held-out figures; with `gate`, also those with the memory's relevance gate at `gate`."""
    model.eval()
    questions = [(r.case_id, q) for r in held.records for q in r.rephrase_prompts]
    hits = held.edits.editor.retrieve([q for _, q in questions], k=1)
    pre = pre_edit_locality(held.edits.editor, held.records)  # the bare questions, no edit
    cases = _score(held.edits, held.records, held.ids, pre)
    fresh = _score(held.fresh_edits, held.fresh, held.fresh_ids)
    summary, rephrase, agree = metrics.aggregate(cases), _rephrase_scores(cases), \
        _locality_scores(cases)
    same = [r.subject in qa.prompt for r in held.records for qas in r.locality.values()
            for qa in qas]
    res = {
        "n_edits": len(held.records),
        "retrieval_hit1": metrics.mean(metrics.hit_at_k([h.id for h in hs], held.ids[c], 1)
                                       for (c, _), hs in zip(questions, hits, strict=True)),
        "edit_succ": summary["rephrase_succ"],
        "edit_em": _exact(rephrase),
        "fresh_succ": metrics.aggregate(fresh)["rephrase_succ"],
        "fresh_em": _exact(_rephrase_scores(fresh)),
        "locality": summary["locality"],
        "locality_same_subject": metrics.mean(a for a, s in zip(agree, same, strict=True) if s),
        "locality_other_subject": metrics.mean(a for a, s in zip(agree, same, strict=True)
                                               if not s),
        "locality_em": _exact(agree),
    }
    if gate is not None:
        gated = _score(held.edits, held.records, held.ids, pre, gate)
        gated_summary = metrics.aggregate(gated)
        res.update(gate=gate, gated_edit_succ=gated_summary["rephrase_succ"],
                   gated_edit_em=_exact(_rephrase_scores(gated)),
                   gated_locality=gated_summary["locality"])
    model.train()
    return res


@dataclass
class RealDev:
    """Real development edits (`real_dev`, e.g. counterfact-val) in a memory of their own."""

    records: list[EditRecord]
    method: RetrievalMethod
    ids: dict[str, int]


def build_real_dev(model, tok, embedder: Embedder, cfg: RecipeConfig, n: int) -> RealDev | None:
    if not cfg.real_dev or n <= 0:
        return None
    from lte.corpus.sources import read_source

    recs = read_source(CorpusSource(path=cfg.real_dev))[2][:n]
    method, ids = _method(model, tok, recs, embedder, tempfile.mkdtemp(prefix="tiny-realdev-"))
    return RealDev(recs, method, ids)


def evaluate_real(model, dev: RealDev | None, gate: float | None = None) -> dict:
    """Edit Succ (rewrite question), rephrase and locality of the real development edits, as
    `lte eval` computes them; with `gate`, locality with the relevance gate too."""
    if dev is None:
        return {}
    model.eval()
    pre = pre_edit_locality(dev.method.editor, dev.records)
    summary = metrics.aggregate(_score(dev.method, dev.records, dev.ids, pre))
    res = {"real_n": len(dev.records), "real_edit_succ": summary["edit_succ"],
           "real_rephrase": summary["rephrase_succ"], "real_locality": summary["locality"]}
    if gate is not None:
        gated = metrics.aggregate(_score(dev.method, dev.records, dev.ids, pre, gate))
        res.update(real_gated_edit_succ=gated["edit_succ"], real_gated_locality=gated["locality"])
    model.train()
    return res


# --------------------------------------------------------------------------------------------
# Training: the curriculum
# --------------------------------------------------------------------------------------------


def lr_at(step: int, cfg: RecipeConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def aux_at(step: int, cfg: RecipeConfig) -> float:
    """All-token loss weight: on during the warm-up, faded out linearly over as many steps again."""
    if step < cfg.aux_steps:
        return cfg.aux_weight
    return cfg.aux_weight * max(0.0, 1 - (step - cfg.aux_steps) / max(1, cfg.aux_steps))


def loss_fn(model, ids, labels, mask, aux: float, gen: torch.Generator):
    """Answer loss (+ `aux` x the loss on a random third of the other tokens).

    The LM head runs only where a loss is taken: with answer-only loss that is ~5 positions of
    ~70, and the head is a third of the tiny model's compute.
    """
    h = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    tgt = labels[:, 1:]
    sel = tgt != IGNORE_INDEX
    ans = F.cross_entropy(model.lm_head(h[sel]), tgt[sel])
    if aux <= 0:
        return ans, ans
    rest = (mask[:, 1:] == 1) & ~sel
    rest &= torch.rand(rest.shape, generator=gen) < 0.33
    if not rest.any():
        return ans, ans
    other = F.cross_entropy(model.lm_head(h[rest]), ids[:, 1:][rest])
    return ans + aux * other, ans


def _answer_tokens(examples: list[dict]) -> int:
    return sum(sum(1 for t in e["labels"] if t != IGNORE_INDEX) for e in examples)


def train_step(model, examples: list[dict], collate: PadCollator, aux: float,
               gen: torch.Generator) -> float:
    """Forward/backward in two length groups (short bare examples padded to long edited ones
    would waste a third of the compute); gradients weighted by answer tokens."""
    examples = sorted(examples, key=lambda e: len(e["input_ids"]))
    half = len(examples) // 2
    n_ans = _answer_tokens(examples)
    total = 0.0
    for group in (examples[:half], examples[half:]):
        if not group:
            continue
        batch = collate(group)
        w = _answer_tokens(group) / n_ans
        loss, ans = loss_fn(model, batch["input_ids"], batch["labels"], batch["attention_mask"],
                            aux, gen)
        (w * loss).backward()
        total += w * ans.item()
    return total


def selection_score(m: dict, cfg: RecipeConfig) -> float:
    real = cfg.real_weight * (m.get("real_edit_succ") or 0.0)
    return min(m["edit_succ"], m["locality"]) + 0.25 * m["edit_em"] + real


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def parse_args(argv=None) -> tuple[RecipeConfig, argparse.Namespace]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default=str(RECIPE), help="YAML recipe (RecipeConfig fields)")
    ap.add_argument("--out", default=str(REPO / "lte" / "assets" / "tiny-lte"))
    ap.add_argument("--log", default=None,
                    help="JSON lines of held-out metrics (default: OUT.log.jsonl)")
    ap.add_argument("--eval-only", action="store_true",
                    help="only re-run the final held-out evaluation of the checkpoint in --out "
                         "(its seeds from lte_meta.json) and update its lte_meta.json")
    ap.add_argument("overrides", nargs="*", metavar="key=value",
                    help="recipe overrides, e.g. steps=4 model.hidden_size=32")
    ns = ap.parse_args(argv)
    return load_config(RecipeConfig, ns.recipe, ns.overrides), ns


def eval_only(out: Path, ns: argparse.Namespace) -> dict:
    """The final evaluation again, on the world seeds the checkpoint was trained and tested on."""
    from lte.modeling.load import load_model_and_tokenizer

    meta = read_meta(out)
    seeds = {k: v for k, v in meta.get("recipe_config", {}).items()
             if k in ("seed", "eval_seed", "train_edits")}
    cfg = load_config(RecipeConfig, ns.recipe,
                      [f"{k}={v}" for k, v in seeds.items()] + ns.overrides)
    model, tok = load_model_and_tokenizer(str(out))
    train_subjects = {d["subject"] for d in generate_world(cfg.train_edits, cfg.seed)}
    embedder = Embedder()
    held = build_heldout(model, tok, embedder, cfg, cfg.final_eval_edits, train_subjects,
                         seed_offset=1)
    final = evaluate(model, held, gate=cfg.gate)
    final.update(evaluate_real(model, build_real_dev(model, tok, embedder, cfg,
                                                     cfg.real_final_edits), gate=cfg.gate))
    print("final:", json.dumps(final), flush=True)
    meta["heldout_final"] = final
    write_meta(out, meta)
    return meta


def main(argv=None) -> dict:
    cfg, ns = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    if ns.eval_only:
        return eval_only(Path(ns.out), ns)
    torch.manual_seed(cfg.seed)
    out = Path(ns.out)
    log_path = Path(ns.log) if ns.log else out.with_name(out.name + ".log.jsonl")
    t0 = time.time()

    # 1. Training world and the distractors retrieved for each edit.
    world = World(cfg.seed)
    base = synth_records(cfg.train_edits, cfg.seed)
    train_subjects = {r.subject for r in base}
    embedder = Embedder(EmbedderConfig())
    distractors = distractor_indices(embedder, base)
    instructions = list(world_instructions(cfg.train_edits, cfg.seed))

    # 2. Tokenizer trained on the text of two variants' examples (so the fixed prompt text and
    # the world's words become few tokens) plus made-up names; the examples are only built here.
    real = RealEdits(cfg, embedder) if cfg.real_corpus else None
    if real:
        print(f"real edits: {len(real.records)} ({real.dropped} dropped for leakage), "
              f"{len(real.pool)} answers; {time.time() - t0:.0f}s", flush=True)
    probe = Batches(world, base, distractors, instructions, None, cfg)
    texts = real.texts() if real else []
    for _ in range(2):
        for exs in probe.buckets.values():
            texts += [m["content"] for ex in exs for m in ex.messages]
        probe.next_variant()
    tok = train_tokenizer(texts, cfg.model.vocab_size)
    print(f"tokenizer: {len(tok)} tokens; {time.time() - t0:.0f}s", flush=True)

    # 3. Model, held-out set, batches.
    mcfg = replace(cfg.model, vocab_size=len(tok))
    model = build_tiny_model(mcfg, tok)
    n_params = count_parameters(model)
    print(f"model: {n_params:,} parameters", flush=True)
    held = build_heldout(model, tok, embedder, cfg, cfg.eval_edits, train_subjects)
    real_dev = build_real_dev(model, tok, embedder, cfg, cfg.real_dev_edits)
    batches = Batches(world, base, distractors, instructions, tok, cfg, real)
    collate = PadCollator(tok.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98),
                            weight_decay=cfg.weight_decay)

    # 4. Train, evaluating on held-out edits and keeping the best weights.
    best, best_state, curve = None, None, []
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    t_train, ema, step = time.time(), None, 0
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        opt.zero_grad(set_to_none=True)
        ans = train_step(model, batches.draw(), collate, aux_at(step, cfg), gen)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = ans if ema is None else 0.98 * ema + 0.02 * ans
        last = step == cfg.steps - 1
        over = bool(cfg.max_minutes and (time.time() - t_train) / 60 > cfg.max_minutes)
        over |= step + 1 == cfg.stop_at
        if (step + 1) % cfg.eval_every == 0 or last or over:
            m = evaluate(model, held)
            m.update(evaluate_real(model, real_dev))
            m.update(step=step + 1, minutes=round((time.time() - t_train) / 60, 2),
                     answer_loss=round(ema, 4), variant=batches.v)
            curve.append(m)
            log.write(json.dumps(m) + "\n")
            log.flush()
            print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in m.items()), flush=True)
            if best is None or selection_score(m, cfg) > selection_score(best, cfg):
                best, best_state = m, copy.deepcopy(model.state_dict())
                # On disk at once, so a stopped run still leaves its best weights.
                save_tiny(model, tok, out, {"partial": True, "best": best,
                                            "command": _command(argv)})
        if over:
            break
    log.close()
    train_minutes = (time.time() - t_train) / 60
    steps_done = step + 1

    # 5. Final evaluation of the best weights on more held-out edits, then save.
    model.load_state_dict(best_state)
    final_held = build_heldout(model, tok, embedder, cfg, cfg.final_eval_edits, train_subjects,
                               seed_offset=1)
    final = evaluate(model, final_held, gate=cfg.gate)
    final.update(evaluate_real(model, build_real_dev(model, tok, embedder, cfg,
                                                     cfg.real_final_edits), gate=cfg.gate))
    print("final:", json.dumps(final), flush=True)
    cmd = _command(argv)
    meta = {
        "recipe": "tools/make_tiny_checkpoint.py",
        "recipe_yaml": str(Path(ns.recipe).resolve().relative_to(REPO))
        if Path(ns.recipe).resolve().is_relative_to(REPO) else ns.recipe,
        "command": cmd,
        # The same run without the wall-clock limit: stops at the same step on any machine.
        "reproduce_command": _reproduce(cmd, steps_done) if cfg.max_minutes else cmd,
        "data_seed": cfg.seed,
        "eval_seed": cfg.eval_seed,
        "recipe_config": asdict(cfg),
        "model_config": asdict(mcfg),
        "parameters": n_params,
        "steps": steps_done,
        "best_step": best["step"],
        "train_minutes": round(train_minutes, 2),
        "total_minutes": round((time.time() - t0) / 60, 2),
        "threads": cfg.threads,
        "machine": f"{os.cpu_count()} CPU cores, torch {torch.__version__}",
        "heldout_final": final,
        "heldout_best_during_training": best,
        "curve": curve,
        "code_version": code_version(),
        "protocol": ("held-out people (eval_seed world), paraphrased questions, descriptor "
                     "retrieved by all-MiniLM-L6-v2 top-1 from a memory of all held-out edits; "
                     "edit_succ = teacher-forced token accuracy of target_new; locality = argmax "
                     "agreement on locality answers with vs without the retrieved descriptor; "
                     "computed by lte.eval.scoring"),
    }
    model.config.use_cache = True
    save_tiny(model, tok, out, meta)
    print(f"saved {out} ({time.time() - t0:.0f}s total)", flush=True)
    return meta


def _command(argv) -> str:
    args = sys.argv[1:] if argv is None else argv
    return ("python tools/make_tiny_checkpoint.py " +
            " ".join(shlex.quote(a) for a in args)).strip()


def _reproduce(cmd: str, steps_done: int) -> str:
    keep = [a for a in shlex.split(cmd)[2:]
            if not a.startswith(("max_minutes=", "stop_at="))]
    return _command([*keep, f"stop_at={steps_done}"])


if __name__ == "__main__":
    main()
