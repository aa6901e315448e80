"""How a method's questions become token ids: chat template or raw text, and which wording.

LTE is scored as it was aligned: chat template, the training wording (`prompts`). The reference's
single-edit runs used another wording (`reference_single`). EasyEdit scores its baselines (FT-L,
FT-M, ROME, ICE) on raw text, without a chat template.
"""

from __future__ import annotations

from dataclasses import dataclass

from lte import prompts


@dataclass(frozen=True)
class PromptFormat:
    template: str = "chat"  # chat | raw
    variant: str = "training"  # a key of prompts.PROMPT_VARIANTS

    def encode(self, tokenizer, question: str, descriptors, target: str
               ) -> tuple[list[int], list[int]]:
        """(prompt ids, target ids) of `question` with `descriptors`, for scoring `target`."""
        if self.template == "raw":
            return prompts.raw_prompt_and_target_ids(tokenizer, question, list(descriptors),
                                                     target, self.variant)
        return prompts.prompt_and_target_ids(tokenizer, question, list(descriptors), target,
                                             self.variant)


CHAT = PromptFormat()
RAW = PromptFormat(template="raw")


def method_format(method) -> PromptFormat:
    """The method's format (methods without one are scored as LTE is)."""
    return getattr(method, "fmt", None) or CHAT
