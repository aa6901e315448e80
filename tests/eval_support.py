"""Test helpers for the editor and eval tests: a tiny Llama + BPE tokenizer, a small memory.

The tiny model is built from a config (2 layers, 32 dims) with a locally trained byte-level BPE
that carries a minimal chat template, so tests need no download. `WordMemory` implements the
`EditMemory` interface with word-overlap scoring, for tests about the editor rather than
retrieval.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from lte.data.record import QA, EditRecord

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def make_records(n: int = 6) -> list[EditRecord]:
    cities = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Quito", "Bern", "Riga", "Baku", "Doha"]
    out = []
    for i in range(n):
        name = f"Person{i} Zorb"
        out.append(EditRecord(
            case_id=str(i), subject=name, prompt=f"Where was {name} born?",
            target_new=f"{cities[i % len(cities)]} Nova Town", ground_truth=["Nowhere"],
            rephrase_prompts=[f"What is the birthplace of {name}?"],
            portability={"Reasoning": [QA(f"Which country is {name}'s birthplace in?",
                                          ["Novaland"])]},
            locality={"Relation_Specificity": [QA(f"Who wrote book {i}?", [f"Author {i} Smith"])]},
            source="test",
        ))
    return out


@functools.lru_cache(maxsize=1)
def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from lte.prompts import editing_prompt

    texts = []
    for r in make_records(10):
        texts += [editing_prompt(r.prompt, [r.descriptor]), r.target_new,
                  r.rephrase_prompts[0]] + [qa.prompt + " " + qa.answer
                                            for qas in r.locality.values() for qa in qas]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_model(seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.eval()
    return model


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
