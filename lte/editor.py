"""LTEEditor: the inference phase of LTE (retrieve edit descriptors -> editing prompt -> model).

Edits go into an `EditMemory`; each question retrieves its top-k descriptors, which are put into
the paper's editing prompt (`lte.prompts`, byte-identical to the alignment data) before the model
scores or generates. Batches are LEFT-padded: every sequence ends in the last column, so the
answer positions line up for generation and for teacher-forced scoring; position ids are computed
from the attention mask so a padded row sees the same positions as when it runs alone.
"""

from __future__ import annotations

import functools
import inspect
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from lte import prompts
from lte.config import EditorConfig
from lte.modeling.batching import left_pad


@dataclass
class Answer:
    """A generated answer and the memory hits whose descriptors were in its prompt."""

    text: str
    hits: list = field(default_factory=list)


def token_accuracy(predicted: Sequence[int], target: Sequence[int]) -> float | None:
    """(1/T) sum_t [pred_t == y_t]; None for an empty target (EasyEdit drops NaN)."""
    if len(target) == 0:
        return None
    if len(predicted) != len(target):
        raise ValueError(f"{len(predicted)} predictions for {len(target)} target tokens")
    return sum(int(p == t) for p, t in zip(predicted, target, strict=True)) / len(target)


@dataclass
class TokenPrediction:
    """Teacher-forced argmax predictions at each target position, and the target ids."""

    predicted: list[int]
    target: list[int]

    @property
    def accuracy(self) -> float | None:
        """Fraction of target tokens predicted exactly; None for an empty target."""
        return token_accuracy(self.predicted, self.target)


def _as_list(x) -> list:
    return [x] if isinstance(x, str) else list(x)


def _chunks(order: list[int], size: int):
    for i in range(0, len(order), size):
        yield order[i:i + size]


class LTEEditor:
    """Model + tokenizer + edit memory: edit, forget, retrieve, answer, score."""

    def __init__(self, model, tokenizer, memory, *, top_k: int | None, batch_size: int,
                 max_new_tokens: int):
        """`top_k`: memory.top_k (None without a memory); `batch_size`, `max_new_tokens`: from
        the caller's config (EditorConfig and the others); the defaults live there only."""
        self.model = model
        self.tokenizer = tokenizer
        self.memory = memory
        self.top_k = top_k
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.model.eval()
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else tokenizer.eos_token_id
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    @classmethod
    def from_config(cls, cfg: EditorConfig, model=None, tokenizer=None) -> LTEEditor:
        """Load the model (unless given) and open `memory_dir` or create a temporary memory."""
        from lte.memory import EditMemory

        if model is None or tokenizer is None:
            from lte.modeling.load import load_model_and_tokenizer

            model, tokenizer = load_model_and_tokenizer(cfg.model)
        if cfg.memory_dir:
            from pathlib import Path

            path = Path(cfg.memory_dir)
            memory = (EditMemory.open(path) if path.exists()
                      else EditMemory.create(path, cfg.memory))
        else:
            memory = EditMemory.create(tempfile.mkdtemp(prefix="lte-memory-"), cfg.memory)
        return cls(model, tokenizer, memory, top_k=cfg.memory.top_k, batch_size=cfg.batch_size,
                   max_new_tokens=cfg.model.max_new_tokens)

    @property
    def device(self):
        return next(self.model.parameters()).device

    # ---- memory ------------------------------------------------------------------------------

    def edit(self, records) -> list[int]:
        """Store edits; they apply to the next query (one embedding + one index insert each)."""
        return list(self.memory.add(list(records)))

    def forget(self, ids: Sequence[int]) -> int:
        return self.memory.delete(list(ids))

    def memory_stats(self) -> dict:
        """Counts and sizes of the edit memory (`EditMemory.stats`); {} without one."""
        return self.memory.stats() if self.memory is not None else {}

    def close(self) -> None:
        if self.memory is not None:
            self.memory.close()

    def retrieve(self, questions, k: int | None = None) -> list[list]:
        questions = _as_list(questions)
        if self.memory is None or not questions:
            return [[] for _ in questions]
        return [list(h) for h in self.memory.search(questions, k=k or self.top_k)]

    def contexts(self, questions, k: int | None = None) -> tuple[list[list[str]], list[list]]:
        """(descriptors shown per question, hits retrieved per question).

        `k` may exceed `top_k` to measure hit@k; only the first `top_k` descriptors are shown.
        """
        hits = self.retrieve(questions, k=max(k or self.top_k, self.top_k))
        return [[h.descriptor for h in hs[:self.top_k]] for hs in hits], hits

    # ---- prompts -----------------------------------------------------------------------------

    def build_prompt(self, question: str, descriptors: Sequence[str]) -> str:
        """The chat-templated editing prompt up to where the answer starts."""
        return prompts.chat_prefix(self.tokenizer, question, list(descriptors))

    def prompt_ids(self, question: str, descriptors: Sequence[str]) -> list[int]:
        return prompts.prompt_and_target_ids(self.tokenizer, question, list(descriptors), "")[0]

    def _resolve(self, questions: list[str], descriptors):
        if descriptors is None:
            return self.contexts(questions)
        if len(descriptors) != len(questions):
            raise ValueError("descriptors must have one list per question")
        return [list(d) for d in descriptors], [[] for _ in questions]

    # ---- scoring -----------------------------------------------------------------------------

    def predict_tokens(self, questions, targets, descriptors=None,
                       fmt: prompts.PromptFormat = prompts.CHAT) -> list[TokenPrediction]:
        """Teacher-forced argmax at each target token after the editing prompt.

        `descriptors`: one list per question; None retrieves them from memory.
        """
        questions, targets = _as_list(questions), _as_list(targets)
        if len(questions) != len(targets):
            raise ValueError("one target per question")
        descs, _ = self._resolve(questions, descriptors)
        pairs = [fmt.encode(self.tokenizer, q, d, t)
                 for q, d, t in zip(questions, descs, targets, strict=True)]
        return self.predict_pairs(pairs)

    def predict_pairs(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[TokenPrediction]:
        """Teacher-forced predictions for (prompt ids, target ids) pairs, batched."""
        import torch

        out: list[TokenPrediction | None] = [None] * len(pairs)
        # Similar lengths together: less padding, same results (checked by the tests).
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        for chunk in _chunks(order, self.batch_size):
            seqs = [list(pairs[i][0]) + list(pairs[i][1]) for i in chunk]
            tmax = max(len(pairs[i][1]) for i in chunk)
            ids, mask, pos = left_pad(seqs, self.pad_id, self.device)
            kwargs = {"logits_to_keep": tmax + 1} if self._keeps_logits else {}
            with torch.no_grad():
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos,
                                    **kwargs).logits
            logits = logits[:, -(tmax + 1):]
            argmax = logits.argmax(-1).tolist()
            for row, i in enumerate(chunk):
                target = list(pairs[i][1])
                # Row ends at the last column; token k of the target is predicted one column
                # before it: kept column tmax - len(target) + k.
                start = tmax - len(target)
                out[i] = TokenPrediction(argmax[row][start:start + len(target)], target)
        return out  # type: ignore[return-value]

    def score(self, questions, targets, descriptors=None) -> list[float | None]:
        """Teacher-forced token accuracy of each target (EasyEdit's rewrite_acc)."""
        return [p.accuracy for p in self.predict_tokens(questions, targets, descriptors)]

    # ---- generation --------------------------------------------------------------------------

    @functools.cached_property
    def _stop_ids(self) -> list[int]:
        # The tokenizer is fixed: its end-of-turn ids are worked out once, not per generate call.
        return prompts.stop_token_ids(self.tokenizer)

    def generate_ids(self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int,
                     min_new_tokens: int = 0) -> list[list[int]]:
        """Greedy continuations (without the prompt, cut at end-of-sequence), batched."""
        import torch

        stops = self._stop_ids
        out: list[list[int] | None] = [None] * len(prompt_ids)
        order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
        for chunk in _chunks(order, self.batch_size):
            ids, mask, _ = left_pad([prompt_ids[i] for i in chunk], self.pad_id, self.device)
            with torch.no_grad():
                seqs = self.model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                    min_new_tokens=min_new_tokens, do_sample=False, num_beams=1,
                    pad_token_id=self.pad_id, eos_token_id=stops,
                    temperature=None, top_p=None, top_k=None,
                )
            for row, i in enumerate(chunk):
                new = seqs[row, ids.shape[1]:].tolist()
                ends = [new.index(t) for t in stops if t in new]
                if ends:
                    new = new[:min(ends)]
                out[i] = new
        return out  # type: ignore[return-value]

    def sample_fluency(self, texts, case_ids, total_tokens: int, seed: int) -> list[str]:
        """The reference's Fluency texts: each bare text, top-k sampled to `total_tokens`."""
        from lte.modeling.sampling import sample_texts

        return sample_texts(self.model, self.tokenizer, list(texts), list(case_ids),
                            total_tokens, seed)

    def answer(self, questions, descriptors=None, max_new_tokens: int | None = None,
               min_new_tokens: int = 0, fmt: prompts.PromptFormat = prompts.CHAT
               ) -> list[Answer]:
        """Generate answers with retrieved (or given) descriptors in the editing prompt."""
        questions = _as_list(questions)
        descs, hits = self._resolve(questions, descriptors)
        ids = [fmt.encode(self.tokenizer, q, d, "")[0]
               for q, d in zip(questions, descs, strict=True)]
        gen = self.generate_ids(ids, max_new_tokens or self.max_new_tokens, min_new_tokens)
        texts = self.tokenizer.batch_decode(gen, skip_special_tokens=True)
        return [Answer(t.strip(), h) for t, h in zip(texts, hits, strict=True)]
