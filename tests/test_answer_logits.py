"""The LM head narrowed to the positions that predict a label (lte.align.answer_logits) gives the
model's own loss and gradients, padded or packed, and leaves every other forward untouched."""

from __future__ import annotations

import pytest
import torch
from test_packing import _examples, _model

from lte.align.answer_logits import AnswerLogits
from lte.modeling.batching import PadCollator
from lte.modeling.packing import PackedCollator


def _loss_and_grads(model, batch, narrow=None, n_items=None):
    model.zero_grad()
    inputs = dict(batch)
    if narrow is None:
        loss = model(**inputs).loss if n_items is None else \
            model(**inputs, num_items_in_batch=n_items).loss
    else:
        narrow.expect(inputs)
        labels = inputs.pop("labels")
        out = model(**inputs)
        assert out.logits.shape[0] == int((labels[..., 1:] != -100).sum())  # narrowed rows only
        loss = narrow.loss(out, labels, n_items)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                           if p.grad is not None}


@pytest.mark.parametrize("collate", ["padded", "packed"])
@pytest.mark.parametrize("n_items", [None, 23])
def test_narrowed_head_gives_the_models_loss_and_gradients(collate, n_items):
    model = _model("llama", "sdpa")
    examples = _examples(97)
    batch = PadCollator(0)(examples) if collate == "padded" else PackedCollator()(examples)
    ref_loss, ref_grads = _loss_and_grads(model, batch, n_items=n_items)
    narrow = AnswerLogits(model)
    loss, grads = _loss_and_grads(model, batch, narrow, n_items=n_items)
    assert torch.allclose(loss, ref_loss, atol=1e-6)
    assert ref_grads.keys() == grads.keys()
    for name in ref_grads:
        assert torch.allclose(grads[name], ref_grads[name], atol=1e-6), name


def test_head_is_untouched_outside_an_expected_forward():
    model = _model("llama", "sdpa")
    batch = PadCollator(0)(_examples(97))
    AnswerLogits(model)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert logits.shape[:2] == batch["input_ids"].shape  # every position, as generation needs
