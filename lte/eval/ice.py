"""ICE: the edit's own fact in the prompt, on the model the paper edits (EasyEdit's ICE row).

EasyEdit's ICE is IKE with `use_icl_examples=False`: no demonstrations, no retrieval of other
edits; every question of a case (rewrite, rephrase, portability, locality) is asked as
`New Fact: {prompt} {target_new}\\nPrompt: {question}` in raw text. Nothing is stored, so its
edit time is zero and the protocols differ only in which cases are scored.
"""

from __future__ import annotations

from lte.editor import LTEEditor
from lte.eval.formats import PromptFormat

ICE_FORMAT = PromptFormat(template="raw", variant="ice")


class ICE:
    name = "ice"
    retrieves = False
    fmt = ICE_FORMAT

    def __init__(self, editor: LTEEditor):
        self.editor = editor

    def reset(self) -> None:
        pass

    def insert(self, records):
        return {}

    def contexts(self, questions, owners, k):
        return [[o.descriptor] for o in owners], [[] for _ in questions]
