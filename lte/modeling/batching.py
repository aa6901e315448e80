"""Token sequences -> padded batches: right padding for training, left padding for inference."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lte.prompts import IGNORE_INDEX


@dataclass
class PadCollator:
    """Right-pads a batch; padding is masked out of attention and of the loss."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None  # 8 on GPU: tensor-core friendly shapes

    def __call__(self, batch: list[dict]) -> dict:
        import torch

        width = max(len(e["input_ids"]) for e in batch)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            width = (width + m - 1) // m * m
        ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, e in enumerate(batch):
            n = len(e["input_ids"])
            ids[row, :n] = torch.tensor(e["input_ids"], dtype=torch.long)
            labels[row, :n] = torch.tensor(e["labels"], dtype=torch.long)
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device=None):
    """(input_ids, attention_mask, position_ids) for left-padded sequences.

    Position ids count only real tokens, so row i gets positions 0..len_i-1 whatever its padding;
    without them HF models number the pad columns too and a padded row drifts from its unbatched
    result.
    """
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)
