"""How a method's questions become token ids: chat template or raw text, and which wording.

LTE is scored as it was aligned: chat template, the training wording (`prompts`). The reference's
single-edit runs used another wording (`reference_single`). EasyEdit scores its baselines (FT-L,
FT-M, ROME, ICE) on raw text, without a chat template.
"""

from __future__ import annotations

from lte.prompts import CHAT, RAW, PromptFormat

__all__ = ["CHAT", "RAW", "PromptFormat", "method_format"]


def method_format(method) -> PromptFormat:
    """The method's format (methods without one are scored as LTE is)."""
    return getattr(method, "fmt", None) or CHAT
