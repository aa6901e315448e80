"""The FAISS factory strings a memory accepts: checked when a config is built, parsed by the index.

Here rather than in `lte.memory.index` so that the config package imports no stage.
"""

from __future__ import annotations

import re

# Factory strings accepted; the structure names follow faiss's `index_factory`.
INDEX_SPEC = re.compile(r"^(Flat|HNSW(\d+)(,Flat)?|IVF(\d+|auto),(Flat|PQ(\d+)(x\d+)?))$")
# Short names for the CLI's --index.
INDEX_PRESETS = {"flat": "Flat", "ivf": "IVFauto,Flat", "ivfpq": "IVFauto,PQ32", "hnsw": "HNSW32"}


def check_index_spec(spec: str) -> str | None:
    """None when `spec` is a supported factory string, else the problem in one line."""
    if not INDEX_SPEC.match(spec):
        return (f"index '{spec}' is not supported; use Flat, HNSW<M>, IVF<nlist|auto>,Flat or "
                f"IVF<nlist|auto>,PQ<m> (or the presets {', '.join(INDEX_PRESETS)})")
    return None


def resolve_index_spec(spec: str) -> str:
    return INDEX_PRESETS.get(spec, spec)
