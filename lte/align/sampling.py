"""Length-grouped sampling for the padded path: micro batches of examples of similar length.

The order is a pure function of (seed, epoch), as the Trainer's default seedable random sampler's
is: a resumed run rebuilds the same epoch order and the Trainer skips the batches it already
trained on, so it lands on the same examples. Each micro batch is one slice of `micro_batch`
indices; accelerate hands whole micro batches to processes in turn, so grouping survives sharding.
"""

from __future__ import annotations


class LengthGroupedSampler:
    """Shuffle, cut into mega-batches, sort each by length, then shuffle the micro batches.

    As transformers' `get_length_grouped_indices` (mega-batches of `mega` micro batches, sorted
    longest first), but seeded per epoch and with the micro batches of an epoch shuffled, so that
    one optimizer step does not hold only the longest or only the shortest examples.
    """

    def __init__(self, lengths: list[int], micro_batch: int, seed: int, mega: int = 50):
        self.lengths = list(lengths)
        self.micro_batch = micro_batch
        self.seed = seed
        self.mega = max(1, min(mega, len(self.lengths) // (micro_batch * 4)))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # the Trainer calls this at every epoch start
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def indices(self) -> list[int]:
        import torch

        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        size = self.mega * self.micro_batch
        batches = []
        for start in range(0, len(order), size):
            chunk = sorted(order[start:start + size], key=lambda i: -self.lengths[i])
            batches += [chunk[i:i + self.micro_batch] for i in range(0, len(chunk), self.micro_batch)]
        # a short last batch stays last: anywhere else it would shift every later batch's cut
        tail = [batches.pop()] if batches and len(batches[-1]) < self.micro_batch else []
        shuffled = [batches[b] for b in torch.randperm(len(batches), generator=g).tolist()]
        return [i for b in shuffled + tail for i in b]

    def __iter__(self):
        return iter(self.indices())
