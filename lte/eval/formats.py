"""Which `PromptFormat` (lte.prompts) a method's questions are encoded with.

LTE is scored as it was aligned: chat template, the training wording (`prompts`). The reference's
single-edit runs used another wording (`reference_single`). EasyEdit scores its baselines (FT-L,
FT-M, ROME, ICE) on raw text, without a chat template.
"""

from __future__ import annotations

from lte.prompts import CHAT, PromptFormat


def method_format(method) -> PromptFormat:
    """The method's format (methods without one are scored as LTE is)."""
    return getattr(method, "fmt", None) or CHAT
