"""`answers: model`: the base model's own greedy answer to every question the corpus asks bare.

Keeping the base model's answers (rather than the file's ground truth) on the no-edit side keeps
its behaviour exactly where the edit does not apply, which is what Locality measures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lte.config import ModelConfig
from lte.corpus.construct import ConstructOptions, edit_examples
from lte.corpus.sources import Instruction
from lte.data.record import EditRecord


def questions_to_answer(records: Iterable[EditRecord], instructions: Iterable[Instruction],
                        opts: ConstructOptions) -> list[str]:
    """Every question construction asks for an original answer, sorted and unique.

    Construction itself records them (with a placeholder answer), so this cannot drift from it.
    """
    asked: set[str] = set()

    def record_question(_record: EditRecord, question: str) -> str:
        asked.add(question)
        return ""

    for r in records:
        edit_examples(r, [], opts, record_question)
        asked.add(r.prompt)  # the manifest's in-scope-only count asks it of every record
    asked.update(qa.prompt for _, qa in instructions)
    return sorted(asked)


class AnswerGenerator:
    """Greedy answers of one model, batched with left padding; a Ray Data actor or a plain call."""

    def __init__(self, model_cfg: ModelConfig, batch_size: int = 16):
        from lte.modeling.load import load_model_and_tokenizer

        # No global torch.set_grad_enabled(False): in the local engine this runs in the caller's
        # process; HF generate already runs without gradients.
        self.model, self.tokenizer = load_model_and_tokenizer(model_cfg)
        self.model.eval()
        self.max_new_tokens = model_cfg.max_new_tokens
        self.batch_size = batch_size
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"

    def answer(self, questions: Sequence[str]) -> list[str]:
        from lte.prompts import chat_prefix, stop_token_ids

        self.stops = stop_token_ids(self.tokenizer)
        out: list[str] = []
        for start in range(0, len(questions), self.batch_size):
            chunk = questions[start:start + self.batch_size]
            texts = [chat_prefix(self.tokenizer, q, []) for q in chunk]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.model.device)
            gen = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id,
                                      eos_token_id=self.stops)
            new = gen[:, enc["input_ids"].shape[1]:]
            out += [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return out

    def __call__(self, batch):
        """Ray Data batch (pyarrow) with a `question` column -> adds `answer`."""
        import pyarrow as pa

        questions = batch.column("question").to_pylist()
        return batch.append_column("answer", pa.array(self.answer(questions), pa.string()))
