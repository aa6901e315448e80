"""Length-grouped sampling (lte.align.sampling) and the packing / grouping options of a whole
single-process run: same order from the same seed and epoch, less padding, and a resumed run that
continues on exactly the examples the uninterrupted one trained on."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from lte.align.sampling import LengthGroupedSampler
from lte.config import AlignConfig, load_config
from lte.errors import UserError
from lte.layout import read_meta

REPO = Path(__file__).resolve().parents[1]


def _padding_share(lengths, order, micro):
    batches = [order[i:i + micro] for i in range(0, len(order), micro)]
    computed = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths) / computed


def test_grouped_order_is_a_seeded_permutation_per_epoch_with_less_padding():
    rng = random.Random(0)
    lengths = [int(rng.expovariate(1 / 50)) + 10 for _ in range(1003)]
    s = LengthGroupedSampler(lengths, micro_batch=8, seed=42)
    first = list(s)
    assert sorted(first) == list(range(1003))
    assert list(LengthGroupedSampler(lengths, micro_batch=8, seed=42)) == first  # a fresh one
    s.set_epoch(1)
    assert list(s) != first and sorted(s) == list(range(1003))
    s.set_epoch(0)
    assert list(s) == first  # a resumed run rebuilds epoch 0's order
    assert list(LengthGroupedSampler(lengths, 8, seed=7)) != first
    shuffled = list(range(1003))
    random.Random(1).shuffle(shuffled)
    assert _padding_share(lengths, first, 8) < 0.5 * _padding_share(lengths, shuffled, 8)
    # every micro batch is one slice of a length-sorted mega-batch (the one short batch comes
    # last, so no cut is shifted): each is in descending length order
    for i in range(0, len(first), 8):
        batch = [lengths[j] for j in first[i:i + 8]]
        assert batch == sorted(batch, reverse=True), i


def test_grouping_is_for_the_padded_path_only():
    with pytest.raises(UserError, match="group_by_length only applies with packing: none"):
        load_config(AlignConfig, None, ["packing=padding_free", "group_by_length=true"])
    with pytest.raises(UserError, match="packing='pad'"):
        load_config(AlignConfig, None, ["packing=pad"])


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from lte.align.smoke import write_smoke_corpus, write_smoke_model
    from lte.modeling.load import load_tokenizer

    root = tmp_path_factory.mktemp("sampling")
    model = write_smoke_model(root / "model", hidden_size=32, layers=1, vocab_size=300)
    corpus = write_smoke_corpus(root / "corpus", load_tokenizer(str(model)), n=96,
                                max_distractors=6)
    return model, corpus


def _cfg(smoke, out, *extra):
    model, corpus = smoke
    return load_config(AlignConfig, REPO / "configs/align/tiny.yaml", [
        f"corpus={corpus}", f"model.name_or_path={model}", "deepspeed=null", f"out={out}",
        "max_steps=6", "save_steps=3", "logging_steps=1", "global_batch_size=8",
        "micro_batch_size=4", "lr=3e-3", "warmup_ratio=0.0", "lr_scheduler=constant",
        "verify_save=false", *extra])


def _losses(out: Path) -> list[float]:
    return [h["loss"] for h in read_meta(out)["loss_history"]]


def test_grouped_run_resumes_on_the_same_examples(smoke, tmp_path):
    from lte.align.recipe import run_alignment

    whole = tmp_path / "whole"
    run_alignment(_cfg(smoke, whole, "group_by_length=true"))
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(whole / "checkpoint-3", resumed / "checkpoint-3")
    run_alignment(_cfg(smoke, resumed, "group_by_length=true"), resume=True)
    assert _losses(resumed)[3:] == pytest.approx(_losses(whole)[3:], abs=1e-5)
    # grouping changed the order: the ungrouped run sees other batches
    plain = tmp_path / "plain"
    run_alignment(_cfg(smoke, plain))
    assert _losses(plain) != pytest.approx(_losses(whole), abs=1e-3)


def test_packed_run_learns_as_the_padded_one_and_computes_no_padding(smoke, tmp_path):
    from lte.align.recipe import run_alignment

    runs = {}
    for packing in ("none", "padding_free"):
        out = tmp_path / packing
        run_alignment(_cfg(smoke, out, f"packing={packing}"))
        runs[packing] = read_meta(out)["loss_history"]
    # same examples, same order, same per-token mean: the same losses up to float noise
    assert [h["loss"] for h in runs["padding_free"]] == pytest.approx(
        [h["loss"] for h in runs["none"]], abs=2e-3)
    assert runs["padding_free"][-1]["num_input_tokens_seen"] == \
        runs["none"][-1]["num_input_tokens_seen"]  # useful tokens, counted either way
    last = runs["padding_free"][-1]
    assert last["computed_tokens_per_s"] == pytest.approx(last["tokens_per_s"], rel=0.05)
    padded = runs["none"][-1]
    assert padded["computed_tokens_per_s"] > padded["tokens_per_s"]
