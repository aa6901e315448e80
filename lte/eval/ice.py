"""ICE: the edit's own fact in the prompt, on the model the paper edits (EasyEdit's ICE row).

EasyEdit's ICE is IKE with `use_icl_examples=False`: no demonstrations, no retrieval of other
edits; every question of a case (rewrite, rephrase, portability, locality) is asked as
`New Fact: {prompt} {target_new}\\nPrompt: {question}` in raw text. Nothing is stored, so its
edit time is zero and the protocols differ only in which cases are scored.
"""

from __future__ import annotations

from lte.eval.methods import FixedContext
from lte.prompts import PromptFormat

ICE_FORMAT = PromptFormat(template="raw", variant="ice")


class ICE(FixedContext):
    """The case's own descriptor before every question, in ICE's raw-text format."""

    name = "ice"
    gold = True
    fmt = ICE_FORMAT
