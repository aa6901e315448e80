"""Recipe for the shipped pre-aligned tiny checkpoint (lte/assets/tiny-lte).

    .venv/bin/python tools/make_tiny_checkpoint.py --out lte/assets/tiny-lte

Reads top to bottom: synthetic world -> parallel examples (lte.corpus.construct, distractors from
MiniLM top-5 of other subjects) -> byte-level BPE trained on that text -> tiny LLaMA -> training
with held-out evaluation every --eval-every steps -> the best checkpoint, with the command, data
seeds and measured figures in lte_meta.json.

Held-out evaluation is the embedded default's protocol: edits of people who are not in the
training world, asked with paraphrased questions, each query's descriptor retrieved by MiniLM
top-1 from a memory holding all held-out edits.
  edit_succ  teacher-forced token accuracy of target_new after the editing prompt (EasyEdit);
  edit_em    all target tokens right (names with predictable endings inflate token accuracy);
  fresh_*    the same with targets replaced by made-up names never seen in training;
  locality   fraction of answer tokens of locality questions whose argmax with the retrieved
             descriptor equals the argmax without any edit.

A plain PyTorch loop rather than the HF Trainer (lte.align): the curriculum needs per-step
control the Trainer does not give cheaply, namely an auxiliary all-token loss that is switched
off after a warm-up (it grows the copying circuit early) and batches drawn with fixed shares per
capability from data regenerated with fresh objects as training goes on (so memorising an edit
never pays and only copying from the context does).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lte.corpus.construct import (  # noqa: E402
    LINGUISTIC,
    OUT_OF_SCOPE,
    ConstructOptions,
    edit_examples,
    linguistic_examples,
)
from lte.data.record import EditRecord  # noqa: E402
from lte.data.synth import (  # noqa: E402
    RELATION_INDEX,
    RELATIONS,
    World,
    fresh_object,
    generate_world,
    to_edit_record,
    world_instructions,
)
from lte.embedding import Embedder  # noqa: E402
from lte.modeling.tiny import (  # noqa: E402
    TinyModelConfig,
    build_tiny_model,
    count_parameters,
    save_tiny,
    train_tokenizer,
)
from lte.prompts import IGNORE_INDEX, prompt_and_target_ids, tokenize_chat  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUCKETS = ("in", "port", "out", "bare", "ling")


@dataclass
class RecipeConfig:
    seed: int = 1  # training world (people) and everything random in training
    eval_seed: int = 1001  # held-out world: people never seen in training
    train_edits: int = 1000  # people of the training world (fewer: base facts memorised sooner)
    eval_edits: int = 200  # held-out edits evaluated during training
    final_eval_edits: int = 1000  # held-out edits of the final evaluation of the best checkpoint
    unknown_people: int = 1000  # per variant, edits of new people whose facts nobody knows
    fresh_share: float = 0.7  # training edits whose new object is a made-up name (open classes)
    mix: str = "in=0.35,port=0.03,out=0.40,bare=0.12,ling=0.10"  # batch shares per bucket
    vocab_size: int = 2048
    hidden_size: int = 128
    layers: int = 3
    heads: int = 4
    intermediate_size: int = 256
    steps: int = 6000
    batch_size: int = 32
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 200  # linear LR warm-up
    aux_steps: int = 600  # all-token (copy) loss on for these steps, then faded out
    aux_weight: float = 0.5
    weight_decay: float = 0.01
    eval_every: int = 500
    threads: int = 1  # 2 threads on a loaded 2-core machine were 4-18x slower than 1
    max_minutes: float = 0.0  # stop early (keeping the best checkpoint) after this; 0: no limit
    stop_at: int = 0  # stop after this many steps (the LR schedule still spans --steps); 0: off
    gate: float = 0.84  # final evaluation also reports figures with this retrieval threshold


# --------------------------------------------------------------------------------------------
# Data: training variants of the world and their examples
# --------------------------------------------------------------------------------------------


def neighbours(embedder: Embedder, records: list[EditRecord], k: int = 5) -> list[list[int]]:
    """Per edit, the top-k edits of OTHER subjects by MiniLM similarity of their questions."""
    vecs = embedder.encode([r.prompt for r in records])
    sims = vecs @ vecs.T
    out = []
    for i, row in enumerate(sims):
        order = np.argsort(-row)
        out.append([int(j) for j in order if records[j].subject != records[i].subject][:k])
    return out


def variant(world: World, base: list[EditRecord], v: int, cfg: RecipeConfig) -> list[EditRecord]:
    """The training edits with new objects drawn afresh for variant v."""
    rng = random.Random(f"{cfg.seed}:{world.seed}:variant:{v}")
    out = []
    for rec in base:
        r = RELATION_INDEX[_relation(rec)]
        i = int(rec.case_id.split(":")[-1])
        target = fresh_object(r, rng) if rng.random() < cfg.fresh_share else None
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

    def __init__(self, world, base, neigh, instructions, tokenizer, cfg: RecipeConfig):
        self.world, self.base, self.neigh = world, base, neigh
        self.instructions, self.tok, self.cfg = instructions, tokenizer, cfg
        self.shares = {k: float(v) for k, v in (p.split("=") for p in cfg.mix.split(","))}
        self.rng = random.Random(f"{cfg.seed}:batches")
        self.v = -1
        self.cache: dict[tuple, tuple[list[int], list[int]]] = {}
        self.checked = False
        self.by_relation: dict[str, list[int]] = {}
        for k, rec in enumerate(base):
            self.by_relation.setdefault(_relation(rec), []).append(k)
        self._next_variant()

    def _next_variant(self):
        self.v += 1
        recs = variant(self.world, self.base, self.v, self.cfg)
        descs = [r.descriptor for r in recs]
        pairs = [(rec, [descs[j] for j in nb]) for rec, nb in zip(recs, self.neigh, strict=True)]
        if self.cfg.unknown_people:
            # Held-out people are unknown to the model, so training must show unknown people
            # too: otherwise "recall the fact, else copy the context" fits the training data
            # as well as "copy only what the edit is about", and fails on new people.
            uworld = World(10_000_000 + self.cfg.seed * 100_000 + self.v)
            ubase = [replace(to_edit_record(d, source="synth-unknown"),
                             case_id=f"u{self.v}:{d['case_id']}")
                     for d in generate_world(self.cfg.unknown_people, uworld.seed)]
            for rec in variant(uworld, ubase, self.v, self.cfg):
                # Distractors: the retrieved neighbours of a known edit of the same relation
                # (the same question template, as MiniLM's top-5 mostly are).
                k = self.rng.choice(self.by_relation[_relation(rec)])
                pairs.append((rec, [descs[k], *(descs[j] for j in self.neigh[k])][:5]))
        opts = ConstructOptions(seed=self.cfg.seed * 100_003 + self.v)
        buckets: dict[str, list] = {k: [] for k in BUCKETS}
        for rec, distractors in pairs:
            for ex in edit_examples(rec, distractors, opts):
                buckets[bucket_of(ex)].append(ex)
        for ex in linguistic_examples(self.instructions, descs, opts, source="synth-instr"):
            buckets["ling"].append(ex)
        self.rng.shuffle(buckets["in"])
        self.buckets = buckets

    def _encode_many(self, exs) -> list[tuple[list[int], list[int]]]:
        """tokenize_chat for many examples, with one batched tokenizer call per side (the same
        ids as `tokenize_chat`, checked on the first batch)."""
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

    def next(self) -> list[tuple[list[int], list[int]]]:
        n = self.cfg.batch_size
        names = list(self.shares)
        counts = dict.fromkeys(names, 0)
        for name in self.rng.choices(names, weights=[self.shares[k] for k in names], k=n):
            counts[name] += 1
        if len(self.buckets["in"]) < counts["in"]:
            self._next_variant()
        items = []
        for name, c in counts.items():
            pool = self.buckets[name]
            if not pool or not c:
                continue
            chosen = [pool.pop() for _ in range(c)] if name == "in" else self.rng.choices(pool, k=c)
            items += chosen
        return self._encode_many(items)


def collate(items, pad_id: int):
    width = max(len(ids) for ids, _ in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for k, (x, y) in enumerate(items):
        ids[k, : len(x)] = torch.tensor(x)
        labels[k, : len(y)] = torch.tensor(y)
        mask[k, : len(x)] = 1
    return ids, labels, mask


# --------------------------------------------------------------------------------------------
# Held-out evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class HeldOut:
    edit: list  # (prompt ids, target ids) per (edit, paraphrase)
    fresh: list  # the same with made-up targets
    loc_with: list  # (prompt ids with the retrieved descriptor, answer ids)
    loc_bare: list  # (bare prompt ids, answer ids)
    loc_same: list  # per locality question: about the edited subject itself (else another one)
    hit1: float
    n_edits: int
    edit_bare: list = None  # (bare prompt ids, target ids): what a gated-out question sees
    edit_sim: list = None  # top-1 similarity per edit question
    loc_sim: list = None  # top-1 similarity per locality question


def build_heldout(tok, embedder: Embedder, cfg: RecipeConfig, n: int, train_subjects: set,
                  seed_offset: int = 0) -> HeldOut:
    recs = [to_edit_record(d) for d in generate_world(n + 50, cfg.eval_seed)]
    recs = [r for r in recs if r.subject not in train_subjects][:n]
    rng = random.Random(f"{cfg.eval_seed}:fresh:{seed_offset}")
    fresh_targets = []
    for r in recs:
        rel = RELATION_INDEX[_relation(r)]
        fresh_targets.append(fresh_object(rel, rng) or r.target_new)
    keys = embedder.encode([r.prompt for r in recs])

    def top1(questions: list[str]) -> tuple[list[int], list[float]]:
        sims = embedder.encode(questions) @ keys.T
        return [int(i) for i in sims.argmax(1)], [float(x) for x in sims.max(1)]

    qs = [(k, q) for k, r in enumerate(recs) for q in r.rephrase_prompts]
    hits, edit_sim = top1([q for _, q in qs])
    edit_bare = [prompt_and_target_ids(tok, q, [], recs[k].target_new) for k, q in qs]
    edit, fresh = [], []
    for (k, q), h in zip(qs, hits, strict=True):
        edit.append(prompt_and_target_ids(tok, q, [recs[h].descriptor], recs[k].target_new))
        fdesc = f"{recs[h].prompt} {fresh_targets[h]}"
        fresh.append(prompt_and_target_ids(tok, q, [fdesc], fresh_targets[k]))
    loc = [(qa.prompt, qa.answer) for r in recs for qas in r.locality.values() for qa in qas]
    loc_same = [r.subject in qa.prompt for r in recs for qas in r.locality.values() for qa in qas]
    lhits, loc_sim = top1([q for q, _ in loc])
    loc_with, loc_bare = [], []
    for (q, a), h in zip(loc, lhits, strict=True):
        loc_with.append(prompt_and_target_ids(tok, q, [recs[h].descriptor], a))
        loc_bare.append(prompt_and_target_ids(tok, q, [], a))
    hit1 = float(np.mean([h == k for (k, _), h in zip(qs, hits, strict=True)]))
    return HeldOut(edit, fresh, loc_with, loc_bare, loc_same, hit1, len(recs),
                   edit_bare, edit_sim, loc_sim)


@torch.no_grad()
def predictions(model, pairs, pad_id: int, batch: int = 128) -> list[torch.Tensor]:
    """Argmax predictions at the target positions of each (prompt ids, target ids)."""
    order = sorted(range(len(pairs)), key=lambda k: len(pairs[k][0]) + len(pairs[k][1]))
    out: list = [None] * len(pairs)
    for s in range(0, len(order), batch):
        chunk = order[s: s + batch]
        ids, _, mask = collate([(pairs[k][0] + pairs[k][1],) * 2 for k in chunk], pad_id)
        h = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        for row, k in enumerate(chunk):
            p, t = pairs[k]
            out[k] = model.lm_head(h[row, len(p) - 1: len(p) + len(t) - 1]).argmax(-1)
    return out


def evaluate(model, held: HeldOut, pad_id: int, gate: float | None = None) -> dict:
    """Held-out figures; with `gate`, also those when descriptors whose retrieval similarity is
    below it are dropped (MemoryConfig.threshold), i.e. the question is asked bare."""
    model.eval()
    res = {"n_edits": held.n_edits, "retrieval_hit1": held.hit1}
    for name, pairs in (("edit", held.edit), ("fresh", held.fresh)):
        preds = predictions(model, pairs, pad_id)
        if name == "edit" and gate is not None:
            bare = predictions(model, held.edit_bare, pad_id)
            gp = [p if s >= gate else b for p, b, s in zip(preds, bare, held.edit_sim, strict=True)]
            res["gated_edit_succ"] = float(np.mean(
                [(p == torch.tensor(t)).float().mean().item() for p, (_, t) in zip(gp, pairs, strict=True)]))
            res["gated_edit_em"] = float(np.mean(
                [float(bool((p == torch.tensor(t)).all())) for p, (_, t) in zip(gp, pairs, strict=True)]))
        acc = [(p == torch.tensor(t)).float().mean().item() for p, (_, t) in zip(preds, pairs, strict=True)]
        em = [float(bool((p == torch.tensor(t)).all())) for p, (_, t) in zip(preds, pairs, strict=True)]
        res[f"{name}_succ"] = float(np.mean(acc))
        res[f"{name}_em"] = float(np.mean(em))
    pw = predictions(model, held.loc_with, pad_id)
    pb = predictions(model, held.loc_bare, pad_id)
    agree = [(a == b).float().mean().item() for a, b in zip(pw, pb, strict=True)]
    res["locality"] = float(np.mean(agree))
    res["locality_same_subject"] = float(np.mean([a for a, s in zip(agree, held.loc_same, strict=True) if s]))
    res["locality_other_subject"] = float(np.mean([a for a, s in zip(agree, held.loc_same, strict=True) if not s]))
    res["locality_em"] = float(np.mean([float(bool((a == b).all())) for a, b in zip(pw, pb, strict=True)]))
    if gate is not None:
        res["gate"] = gate
        res["gated_locality"] = float(np.mean(
            [a if s >= gate else 1.0 for a, s in zip(agree, held.loc_sim, strict=True)]))
    res["edit_succ"] = res.pop("edit_succ")
    model.train()
    return res


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def lr_at(step: int, cfg: RecipeConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


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


def train_step(model, items, pad: int, aux: float, gen: torch.Generator):
    """Forward/backward in two length groups (short bare examples padded to long edited ones
    would waste a third of the compute); gradients weighted by answer tokens."""
    items = sorted(items, key=lambda x: len(x[0]))
    groups = [items[: len(items) // 2], items[len(items) // 2:]]
    n_ans = sum(sum(1 for t in y if t != IGNORE_INDEX) for _, y in items)
    total = 0.0
    for g in groups:
        if not g:
            continue
        ids, labels, mask = collate(g, pad)
        w = sum(sum(1 for t in y if t != IGNORE_INDEX) for _, y in g) / n_ans
        loss, ans = loss_fn(model, ids, labels, mask, aux, gen)
        (w * loss).backward()
        total += w * ans.item()
    return total


def selection_score(m: dict) -> float:
    return min(m["edit_succ"], m["locality"]) + 0.25 * m["edit_em"]


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, check=False).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def parse_args(argv=None) -> tuple[RecipeConfig, argparse.Namespace]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "lte" / "assets" / "tiny-lte"))
    ap.add_argument("--log", default=None, help="JSON lines of held-out metrics (default: OUT.log.jsonl)")
    ap.add_argument("--eval-only", action="store_true",
                    help="only re-run the final held-out evaluation of the checkpoint in --out "
                         "(its recipe config from lte_meta.json) and update its lte_meta.json")
    for f in RecipeConfig.__dataclass_fields__.values():
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    ns = ap.parse_args(argv)
    cfg = RecipeConfig(**{k: getattr(ns, k) for k in RecipeConfig.__dataclass_fields__})
    return cfg, ns


def eval_only(out: Path, cfg: RecipeConfig) -> dict:
    from lte.modeling.load import load_model_and_tokenizer

    meta_path = out / "lte_meta.json"
    meta = json.loads(meta_path.read_text())
    if "recipe_config" in meta:
        cfg = replace(RecipeConfig(**meta["recipe_config"]), final_eval_edits=cfg.final_eval_edits,
                      gate=cfg.gate)
    model, tok = load_model_and_tokenizer(str(out))
    train_subjects = {d["subject"] for d in generate_world(cfg.train_edits, cfg.seed)}
    held = build_heldout(tok, Embedder(), cfg, cfg.final_eval_edits, train_subjects,
                         seed_offset=1)
    final = evaluate(model, held, tok.pad_token_id, gate=cfg.gate)
    print("final:", json.dumps(final), flush=True)
    meta["heldout_final"] = final
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv=None) -> dict:
    cfg, ns = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    if ns.eval_only:
        return eval_only(Path(ns.out), cfg)
    torch.manual_seed(cfg.seed)
    out = Path(ns.out)
    log_path = Path(ns.log) if ns.log else out.with_name(out.name + ".log.jsonl")
    t0 = time.time()

    # 1. Training world and its neighbours (distractor candidates).
    world = World(cfg.seed)
    base = [to_edit_record(d) for d in generate_world(cfg.train_edits, cfg.seed)]
    train_subjects = {r.subject for r in base}
    embedder = Embedder()
    neigh = neighbours(embedder, base)
    instructions = list(world_instructions(cfg.train_edits, cfg.seed))

    # 2. Tokenizer trained on the text of two variants' examples (so the fixed prompt text and
    # the world's words become few tokens) plus made-up names.
    tmp_tok = _CharLevelProbe()
    probe = Batches(world, base, neigh, instructions, tmp_tok, cfg)
    texts = []
    for _ in range(2):
        for exs in probe.buckets.values():
            texts += [m["content"] for ex in exs for m in ex.messages]
        probe._next_variant()
    tok = train_tokenizer(texts, cfg.vocab_size)
    print(f"tokenizer: {len(tok)} tokens; {time.time() - t0:.0f}s", flush=True)

    # 3. Model, held-out set, batches.
    mcfg = TinyModelConfig(vocab_size=len(tok), hidden_size=cfg.hidden_size,
                           intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.layers,
                           num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
                           seed=cfg.seed)
    model = build_tiny_model(mcfg, tok)
    n_params = count_parameters(model)
    print(f"model: {n_params:,} parameters", flush=True)
    held = build_heldout(tok, embedder, cfg, cfg.eval_edits, train_subjects)
    batches = Batches(world, base, neigh, instructions, tok, cfg)
    pad = tok.pad_token_id
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
        ans = train_step(model, batches.next(), pad, aux_at(step, cfg), gen)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = ans if ema is None else 0.98 * ema + 0.02 * ans
        last = step == cfg.steps - 1
        over = bool(cfg.max_minutes and (time.time() - t_train) / 60 > cfg.max_minutes)
        over |= step + 1 == cfg.stop_at
        if (step + 1) % cfg.eval_every == 0 or last or over:
            m = evaluate(model, held, pad)
            m.update(step=step + 1, minutes=round((time.time() - t_train) / 60, 2),
                     answer_loss=round(ema, 4), variant=batches.v)
            curve.append(m)
            log.write(json.dumps(m) + "\n")
            log.flush()
            print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in m.items()), flush=True)
            if best is None or selection_score(m) > selection_score(best):
                best, best_state = m, copy.deepcopy(model.state_dict())
                # On disk at once, so a stopped run still leaves its best weights.
                save_tiny(model, tok, out, {"partial": True, "best": best, "command": _command(argv)})
        if over:
            break
    train_minutes = (time.time() - t_train) / 60
    steps_done = step + 1

    # 5. Final evaluation of the best weights on more held-out edits, then save.
    model.load_state_dict(best_state)
    final_held = build_heldout(tok, embedder, cfg, cfg.final_eval_edits, train_subjects,
                               seed_offset=1)
    final = evaluate(model, final_held, pad, gate=cfg.gate)
    print("final:", json.dumps(final), flush=True)
    cmd = _command(argv)
    meta = {
        "recipe": "tools/make_tiny_checkpoint.py",
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
        "code_version": git_rev(),
        "protocol": ("held-out people (eval_seed world), paraphrased questions, descriptor "
                     "retrieved by all-MiniLM-L6-v2 top-1 from a memory of all held-out edits; "
                     "edit_succ = teacher-forced token accuracy of target_new; locality = argmax "
                     "agreement on locality answers with vs without the retrieved descriptor"),
    }
    model.config.use_cache = True
    save_tiny(model, tok, out, meta)
    print(f"saved {out} ({time.time() - t0:.0f}s total)", flush=True)
    return meta


def _command(argv) -> str:
    args = sys.argv[1:] if argv is None else argv
    return ("python tools/make_tiny_checkpoint.py " + " ".join(shlex.quote(a) for a in args)).strip()


def _reproduce(cmd: str, steps_done: int) -> str:
    args = shlex.split(cmd)[2:]
    keep, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("--max-minutes", "--stop-at"):
            skip = True
            continue
        keep.append(a)
    return _command([*keep, "--stop-at", str(steps_done)])


class _CharLevelProbe:
    """Stands in for a tokenizer while the examples that train the real one are built."""

    def __call__(self, *a, **k):  # pragma: no cover - never tokenizes
        raise RuntimeError("probe tokenizer")


if __name__ == "__main__":
    main()
