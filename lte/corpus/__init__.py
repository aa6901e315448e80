"""Parallel alignment corpus: pure construction functions and the Ray Data driver.

- `construct`: examples from one edit record or instruction (pure; seeded per record).
- `sources`: edit files and instructions in, leakage and duplicates out (driver side).
- `distractors`: top retrieved descriptors of other subjects (the memory stage's embedder).
- `answers`: the base model's greedy answers for `answers: model`.
- `shards`: Arrow rows, tokenization, the deterministic parquet writer and its counts.
- `build`: `lte corpus build`, on Ray Data or in one process (identical bytes).
"""
