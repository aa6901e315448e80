"""Test helpers for the editor and eval tests: the library's tiny model and synthetic records,
and a small memory.

The model and its byte-level BPE come from `lte.modeling.tiny` (2 layers, 32 dims), the records
from `lte.data.synth`, so tests need no download. `WordMemory` implements the `EditMemory`
interface with word-overlap scoring, for tests about the editor rather than retrieval.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from lte.data.record import EditRecord
from lte.data.synth import record_texts, synth_records
from lte.modeling.tiny import TinyModelConfig, build_tiny_model, train_tokenizer


def make_records(n: int = 6) -> list[EditRecord]:
    return synth_records(n, seed=3, source="test")


@functools.lru_cache(maxsize=1)
def tiny_tokenizer():
    return train_tokenizer(record_texts(make_records(40)), vocab_size=400)


def tiny_model(seed: int = 0):
    tok = tiny_tokenizer()
    cfg = TinyModelConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, max_position_embeddings=512, seed=seed)
    return build_tiny_model(cfg, tok).eval()


@dataclass
class Hit:
    id: int
    descriptor: str
    score: float
    subject: str


class WordMemory:
    """EditMemory's interface; score = shared lowercase words between query and question."""

    def __init__(self):
        self.edits: dict[int, EditRecord] = {}
        self._next = 0

    def add(self, records):
        ids = []
        for r in records:
            self.edits[self._next] = r
            ids.append(self._next)
            self._next += 1
        return ids

    def delete(self, ids):
        return sum(self.edits.pop(i, None) is not None for i in ids)

    def __len__(self):
        return len(self.edits)

    def search(self, queries, k=None):
        k = k or 1
        out = []
        for q in queries:
            words = set(q.lower().replace("?", " ").split())
            scored = sorted(((len(words & set(r.prompt.lower().replace("?", " ").split())), -i, i)
                             for i, r in self.edits.items()), reverse=True)
            out.append([Hit(i, self.edits[i].descriptor, float(s), self.edits[i].subject)
                        for s, _, i in scored[:k]])
        return out


def make_editor(model, tokenizer, memory=None, **settings):
    """An LTEEditor with EditorConfig's defaults for the settings a test leaves out."""
    from lte.config import EditorConfig
    from lte.editor import LTEEditor

    cfg = EditorConfig()
    settings = {"top_k": cfg.memory.top_k, "batch_size": cfg.batch_size,
                "max_new_tokens": cfg.model.max_new_tokens, **settings}
    return LTEEditor(model, tokenizer, memory, **settings)
