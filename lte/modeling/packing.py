"""Padding-free batches: a micro batch's examples concatenated into one row, no padding at all.

The row carries `position_ids` that restart at 0 for every example and no `attention_mask`.
That is the input transformers (>= 4.44, and 5.x) recognises as packed for its own model classes:
`masking_utils.find_packed_sequence_indices` turns the position restarts into a block-diagonal
causal mask for sdpa, eager and flex attention, and `_flash_attention_forward` turns them into
`cu_seqlens` for flash-attention's varlen kernel. So no mask is built here; we rely on the
library's supported path (`DataCollatorWithFlattening`) and `tests/test_packing.py` checks on
the attention we use that no example sees another.

Loss: each example's first label becomes -100 (it would be predicted from the previous example's
last token); it is a prompt token, already -100, so the answer tokens counted are the padded
path's, and the Trainer's per-token mean over the micro batch (`num_items_in_batch`) is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lte.errors import UserError

# Model types whose transformers modelling code takes the packed path above (create_causal_mask
# or flash-attention with position_ids). Remote-code models (Qwen v1's `qwen`) build their own
# masks from attention_mask and would let examples attend to each other: not listed.
PACKED_MODEL_TYPES = frozenset({"llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "phi3"})


def check_packing_support(model_config, trust_remote_code: bool) -> None:
    """UserError unless the model isolates packed examples through transformers' own code."""
    model_type = getattr(model_config, "model_type", None)
    if trust_remote_code or model_type not in PACKED_MODEL_TYPES:
        raise UserError(
            f"packing: padding_free needs a model whose transformers code isolates packed "
            f"sequences ({', '.join(sorted(PACKED_MODEL_TYPES))}); this one is "
            f"'{model_type}'{' (remote code)' if trust_remote_code else ''}: use packing: none",
            field="packing")


@dataclass
class PackedCollator:
    """Concatenates a micro batch into one [1, total_tokens] row with restarting position_ids.

    `flash_attn_kwargs`: also pass `cu_seq_lens_*` / `max_length_*`, which flash-attention uses
    directly instead of deriving them from position_ids (sdpa and eager ignore them).
    """

    flash_attn_kwargs: bool = False
    _flatten: object = field(init=False, repr=False)

    def __post_init__(self):
        from transformers import DataCollatorWithFlattening

        self._flatten = DataCollatorWithFlattening(
            return_position_ids=True, separator_id=-100,
            return_flash_attn_kwargs=self.flash_attn_kwargs)

    def __call__(self, batch: list[dict]) -> dict:
        return self._flatten([{"input_ids": e["input_ids"], "labels": e["labels"]}
                              for e in batch])
