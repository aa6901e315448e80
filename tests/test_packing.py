"""Padding-free packing (lte.modeling.packing): a packed micro batch gives the padded batch's loss
and gradients, and no example attends to another, under the attention kernels we use on CPU."""

from __future__ import annotations

import pytest
import torch

from lte.errors import UserError
from lte.modeling.batching import PadCollator
from lte.modeling.packing import PackedCollator, check_packing_support
from lte.prompts import IGNORE_INDEX


def _examples(vocab: int, lengths=(7, 12, 3, 9), seed: int = 0) -> list[dict]:
    """Prompt tokens (-100 labels) then an answer of 1-3 tokens, as the corpus makes them."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(3, vocab, (n,), generator=g).tolist()
        answer = 1 + n % 3
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * (n - answer) + ids[-answer:]})
    return out


def _model(model_type: str, attn: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(model_type, vocab_size=97, hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn,
                                             dtype=torch.float32)
    model.config.use_cache = False
    return model


def test_packed_row_restarts_positions_and_masks_each_first_label():
    batch = PackedCollator()([{"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]},
                              {"input_ids": [8, 9], "labels": [8, 9]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    # 8 would be predicted from 7, the previous example's last token: never counted
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9]]
    assert "attention_mask" not in batch  # its absence is what turns on the packed mask


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_micro_batch_has_the_padded_loss_and_gradients(model_type, attn):
    model = _model(model_type, attn)
    examples = _examples(model.config.vocab_size)
    padded = PadCollator(pad_token_id=0)(examples)
    packed = PackedCollator()(examples)
    # same answer tokens counted, so the same per-token mean
    assert (padded["labels"][:, 1:] != IGNORE_INDEX).sum() == (
        packed["labels"][:, 1:] != IGNORE_INDEX).sum()

    grads = []
    for batch in (padded, packed):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss_pad, g_pad), (loss_pack, g_pack) = grads
    torch.testing.assert_close(loss_pack, loss_pad, rtol=1e-5, atol=1e-6)
    for name in g_pad:
        torch.testing.assert_close(g_pack[name], g_pad[name], rtol=1e-4, atol=1e-6,
                                   msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_no_example_attends_to_another_in_a_packed_row(attn):
    model = _model("llama", attn).eval()
    examples = _examples(model.config.vocab_size)
    with torch.no_grad():
        logits = model(**{k: v for k, v in PackedCollator()(examples).items()
                          if k != "labels"}).logits[0]
        start = 0
        for e in examples:
            alone = model(input_ids=torch.tensor([e["input_ids"]])).logits[0]
            n = len(e["input_ids"])
            torch.testing.assert_close(logits[start:start + n], alone, rtol=1e-5, atol=1e-5)
            start += n
        # changing the first example's tokens leaves every later example's logits unchanged
        changed = [dict(examples[0], input_ids=[3] * len(examples[0]["input_ids"])), *examples[1:]]
        again = model(**{k: v for k, v in PackedCollator()(changed).items()
                         if k != "labels"}).logits[0]
    first = len(examples[0]["input_ids"])
    assert (again[:first] - logits[:first]).abs().max() > 1e-3  # the change is visible...
    torch.testing.assert_close(again[first:], logits[first:], rtol=0, atol=1e-6)  # ...only there


def test_remote_code_and_unknown_models_are_refused_with_the_field():
    llama = type("C", (), {"model_type": "llama"})()
    check_packing_support(llama, trust_remote_code=False)
    with pytest.raises(UserError, match="packing") as e:
        check_packing_support(type("C", (), {"model_type": "qwen"})(), trust_remote_code=True)
    assert e.value.field == "packing"
