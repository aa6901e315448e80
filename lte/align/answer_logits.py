"""The language-model head applied only at the positions the loss reads.

The loss covers the answer and its end-of-turn token, a few percent of an editing-prompt sequence,
yet a causal LM's head projects every position onto the vocabulary, and that projection, its
cross-entropy and their backward dominate a step when the vocabulary is large against the hidden
size (the tiny recipe: 1 s of 3 s per micro batch; a 7B model's fp32 logits of a 4k-token micro batch
take 0.5 GB). Handing the head only the hidden states that predict a label gives the same loss and
the same gradients (the other logits never reach the loss) for less time and memory.

It works on any causal LM that exposes `get_output_embeddings()` and calls that module on its final
hidden states: a forward pre-hook narrows the head's input for one forward pass, and the loss is
taken over the narrowed logits. Outside a training forward the hook passes everything through.
"""

from __future__ import annotations

IGNORE_INDEX = -100


def _predicts_label(labels, shift_labels=None):
    """Position t predicts token t+1: keep t where labels[t+1] is learned."""
    import torch

    if shift_labels is not None:  # padding-free collators hand the shifted labels themselves
        return shift_labels != IGNORE_INDEX
    keep = labels[..., 1:] != IGNORE_INDEX
    return torch.nn.functional.pad(keep, (0, 1), value=False)


class AnswerLogits:
    """`expect(batch)` before the forward, `loss(outputs, labels, n)` after it (the Trainer's
    `compute_loss_func` contract)."""

    def __init__(self, model):
        head = model.get_output_embeddings()
        if head is None:
            raise ValueError(f"{type(model).__name__} has no output embeddings to narrow")
        self._keep = None
        self._targets = None
        head.register_forward_pre_hook(self._narrow)

    def expect(self, batch: dict) -> None:
        labels, shift = batch["labels"], batch.get("shift_labels")
        self._keep = _predicts_label(labels, shift)
        shifted = shift if shift is not None else labels[..., 1:]
        self._targets = shifted[shifted != IGNORE_INDEX]  # row-major, as the head's rows

    def _narrow(self, module, args):
        if self._keep is None:
            return None
        hidden, *rest = args
        keep, self._keep = self._keep, None
        if hidden.shape[:-1] != keep.shape:
            raise RuntimeError(f"the head got hidden states of shape {tuple(hidden.shape)} for "
                               f"labels of shape {tuple(keep.shape)}: this model slices before "
                               "its head; set align.head_positions=all")
        return (hidden[keep.to(hidden.device)], *rest)

    def loss(self, outputs, labels, num_items_in_batch=None):
        """Sum of the answer tokens' cross-entropy over the accumulated batch's label count, as
        transformers' ForCausalLMLoss (a mean per micro batch without the count)."""
        import torch

        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        logits = logits.float().reshape(-1, logits.shape[-1])
        targets, self._targets = self._targets.to(logits.device), None
        if num_items_in_batch is None:
            return torch.nn.functional.cross_entropy(logits, targets)
        total = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(total.device)
        return total / num_items_in_batch
