"""Edit memory: embedders, FAISS index (CPU/GPU/sharded), durable edit store.

`EditMemory`, `Hit` and `StoredEdit` are imported on first use, so `import lte.memory.cli`
(done by every `lte` command) stays free of faiss and torch.
"""

from __future__ import annotations

__all__ = ["EditMemory", "Hit", "StoredEdit", "IndexRebuildWarning"]


def __getattr__(name: str):
    if name in ("EditMemory", "Hit", "IndexRebuildWarning"):
        from lte.memory import memory

        return getattr(memory, name)
    if name == "StoredEdit":
        from lte.memory.store import StoredEdit

        return StoredEdit
    raise AttributeError(f"module 'lte.memory' has no attribute {name!r}")
