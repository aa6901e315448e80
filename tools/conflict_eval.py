"""Precision and recall of the conflict detector (`memory.conflict`), embedding against exact.

    python tools/conflict_eval.py [--data ../shared/data] [--json F] [--limit N]

A pair of edits of one subject is a *conflict* when both ask for the same fact: the newer one
must supersede the older. The detector decides a pair with `lte.memory.conflicts.supersedes`,
the code `EditStore.add` runs, on MiniLM key vectors (what the memory stores).

Calibration (dev and train files only, never the evaluation files): positives are each
counterfact-val record's question with its rephrased question; negatives are each question of a
KnowEdit train record (wiki_counterfact-train_cf, wiki_recent-recent_train) with its
Relation_Specificity questions (the same subject, other relations). The threshold is the lowest
that merges at most --max-merged (2 %) of the negatives (lte.memory.conflicts.
choose_conflict_threshold): a false conflict hides a valid edit, a missed one leaves two live,
as the exact rule does. The relevance gate's rule (maximise recall + specificity,
lte.memory.calibrate.choose_threshold) is printed beside it.

Evaluation (the evaluation files, held out from the choice): positives are the 83
counterfact-edit records that repeat an earlier record's subject and question (with another
answer), every counterfact-edit and ZsRE-test question with its rephrase; negatives are the
ZsRE-test questions with their Relation_Specificity questions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lte.config import MemoryConfig  # noqa: E402
from lte.data.readers import read_records  # noqa: E402
from lte.embedding import make_embedder  # noqa: E402
from lte.memory.calibrate import choose_threshold  # noqa: E402
from lte.memory.conflicts import (  # noqa: E402
    EMBEDDING,
    EXACT,
    choose_conflict_threshold,
    normalise,
    supersedes,
)

Pair = tuple[str, str, str]  # subject, older question, newer question


def paraphrase_pairs(records) -> list[Pair]:
    return [(r.subject, r.prompt, q) for r in records for q in r.rephrase_prompts]


def other_relation_pairs(records) -> list[Pair]:
    return [(r.subject, r.prompt, qa.prompt) for r in records
            for qa in r.locality.get("Relation_Specificity", [])]


def repeated_fact_pairs(records) -> list[Pair]:
    """Each record that repeats an earlier one's subject and question, paired with it."""
    first: dict[tuple[str, str], str] = {}
    out = []
    for r in records:
        key = (r.subject, r.prompt)
        if key in first:
            out.append((r.subject, first[key], r.prompt))
        else:
            first[key] = r.prompt
    return out


class Detector:
    """Pair decisions of one rule over key vectors embedded once per distinct question (and
    cached in `cache`, an .npz keyed by the embedder and the question, across runs)."""

    def __init__(self, embedder, threshold: float, cache: Path | None = None):
        self.embedder, self.threshold, self.cache = embedder, threshold, cache
        self.vectors: dict[str, np.ndarray] = {}
        if cache is not None and cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                if str(z["embedder"]) == embedder.name:
                    self.vectors = dict(zip(z["texts"].tolist(), z["vectors"], strict=True))

    def embed(self, pairs: list[Pair]) -> None:
        todo = sorted({q for _, a, b in pairs for q in (a, b)} - set(self.vectors))
        if not todo:
            return
        print(f"embedding {len(todo)} questions", file=sys.stderr)
        vecs = self.embedder.encode(todo, show_progress=True)
        self.vectors.update(zip(todo, vecs, strict=True))
        if self.cache is not None:
            texts = list(self.vectors)
            np.savez(self.cache, embedder=np.array(self.embedder.name), texts=np.array(texts),
                     vectors=np.stack([self.vectors[t] for t in texts]))

    def cosines(self, pairs: list[Pair]) -> np.ndarray:
        self.embed(pairs)
        return np.array([float(self.vectors[a] @ self.vectors[b]) for _, a, b in pairs])

    def decide(self, rule: str, pairs: list[Pair]) -> np.ndarray:
        self.embed(pairs)
        return np.array([bool(supersedes(rule, self.threshold, normalise(s), normalise(b),
                                         self.vectors[b], [normalise(a)], self.vectors[a][None]
                                         )[0]) for s, a, b in pairs], dtype=bool)


def scores(pos: np.ndarray, neg: np.ndarray) -> dict:
    tp, fp = int(pos.sum()), int(neg.sum())
    return {"precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / len(pos) if len(pos) else None,
            "false_positive_rate": fp / len(neg) if len(neg) else None,
            "tp": tp, "fp": fp, "positives": int(len(pos)), "negatives": int(len(neg))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--threshold", default="default",
                    help="threshold evaluated: default (memory.conflict_threshold), calibrated "
                         "(this run's choice) or a number")
    ap.add_argument("--max-merged", type=float, default=0.02,
                    help="share of other-relation calibration pairs the threshold may merge")
    ap.add_argument("--limit", type=int, default=None,
                    help="records per evaluation file (the repeated facts always come from all "
                         "of counterfact-edit; calibration reads its files whole)")
    ap.add_argument("--cache", default=None, metavar="NPZ",
                    help="keep the question vectors here and reuse them on the next run")
    ap.add_argument("--json", default=None, metavar="FILE")
    args = ap.parse_args(argv)
    data = Path(args.data)

    def load(name):
        return read_records(data / name)

    started = time.perf_counter()
    cfg = MemoryConfig()
    detector = Detector(make_embedder(cfg.embedder), cfg.conflict_threshold,
                        Path(args.cache) if args.cache else None)

    # -- calibration: dev and train files -----------------------------------------------------
    cal_pos = paraphrase_pairs(load("counterfact/counterfact-val.json"))
    cal_neg = (other_relation_pairs(load("knowedit/wiki_counterfact-train_cf.json"))
               + other_relation_pairs(load("knowedit/wiki_recent-recent_train.json")))
    pos_cos, neg_cos = detector.cosines(cal_pos), detector.cosines(cal_neg)
    youden, y_keep, y_reject = choose_threshold(pos_cos, neg_cos)
    chosen, keep, merged = choose_conflict_threshold(pos_cos, neg_cos, args.max_merged)
    detector.threshold = {"default": cfg.conflict_threshold, "calibrated": chosen}.get(
        args.threshold) or float(args.threshold)
    calibration = {"threshold": chosen, "recall": keep, "merged": merged,
                   "max_merged": args.max_merged,
                   "recall_plus_specificity_threshold": youden,
                   "recall_plus_specificity": [y_keep, y_reject],
                   "positives": len(cal_pos), "negatives": len(cal_neg),
                   "positive_cosine_median": float(np.median(pos_cos)),
                   "negative_cosine_median": float(np.median(neg_cos)),
                   "negative_cosine_p99": float(np.quantile(neg_cos, 0.99))}
    print(f"calibration (counterfact-val paraphrases vs KnowEdit train other relations, "
          f"{len(cal_pos)} + {len(cal_neg)} pairs): threshold {chosen:.4f} merges {merged:.1%} "
          f"of other-relation pairs, recall {keep:.3f}; max recall + specificity would be "
          f"{youden:.4f} (recall {y_keep:.3f}, merges {1 - y_reject:.1%}); configured default "
          f"{cfg.conflict_threshold}")

    # -- evaluation: held-out files -----------------------------------------------------------
    edit = read_records(data / "counterfact/counterfact-edit.json")
    zsre = read_records(data / "knowedit/ZsRE-test-all.json")[:args.limit]
    positives = {"counterfact-edit repeated facts": repeated_fact_pairs(edit),
                 "counterfact-edit paraphrases": paraphrase_pairs(edit[:args.limit]),
                 "ZsRE-test paraphrases": paraphrase_pairs(zsre)}
    negatives = {"ZsRE-test other relations": other_relation_pairs(zsre)}
    all_pos = [p for ps in positives.values() for p in ps]
    all_neg = [p for ps in negatives.values() for p in ps]
    results = {}
    print(f"\nevaluation, threshold {detector.threshold:.4f} "
          f"({len(all_pos)} conflicting pairs, {len(all_neg)} same-subject other-relation pairs)")
    print("| rule | precision | recall | false positives | " + " | ".join(
        f"recall: {n} ({len(p)})" for n, p in positives.items()) + " |")
    print("|---" * (4 + len(positives)) + "|")
    for rule in (EMBEDDING, EXACT):
        pos, neg = detector.decide(rule, all_pos), detector.decide(rule, all_neg)
        row = scores(pos, neg)
        row["by_set"] = {n: scores(detector.decide(rule, p), np.zeros(0, bool))["recall"]
                         for n, p in positives.items()}
        results[rule] = row
        print(f"| {rule} | {row['precision']:.3f} | {row['recall']:.3f} | {row['fp']} of "
              f"{row['negatives']} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in row["by_set"].values())
              + " |")
    seconds = time.perf_counter() - started
    print(f"\n{len(detector.vectors)} distinct questions embedded; {seconds:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"calibration": calibration, "evaluation": results,
                                               "threshold": detector.threshold,
                                               "seconds": seconds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
