"""The FAISS factory strings a memory accepts: checked when a config is built, parsed by the index.

Here rather than in `lte.memory.index` so that the config package imports no stage.
"""

from __future__ import annotations

import re

# Factory strings accepted; the structure names follow faiss's `index_factory`.
# `IVF..,PQ<m>x4fs,RFlat`: 4-bit fast-scan codes, the shortlist re-ranked on the exact vectors.
INDEX_SPEC = re.compile(
    r"^(Flat|HNSW(\d+)(,Flat)?|IVF(\d+|auto),(Flat|PQ(\d+)(x\d+)?|PQ(\d+)x4fs,RFlat))$")
# Short names for the CLI's --index.
INDEX_PRESETS = {"flat": "Flat", "ivf": "IVFauto,Flat", "ivfpq": "IVFauto,PQ32", "hnsw": "HNSW32",
                 "ivffs": "IVFauto,PQ192x4fs,RFlat"}


def check_index_spec(spec: str) -> str | None:
    """None when `spec` is a supported factory string, else the problem in one line."""
    m = INDEX_SPEC.match(spec) if isinstance(spec, str) else None
    if not m:
        return (f"index '{spec}' is not supported; use Flat, HNSW<M>, IVF<nlist|auto>,Flat, "
                f"IVF<nlist|auto>,PQ<m> or IVF<nlist|auto>,PQ<m>x4fs,RFlat (or the presets {', '.join(INDEX_PRESETS)})")
    # Numbers faiss would only reject with an assertion abort (HNSW0, IVF0, PQ0, PQ8x0).
    if m.group(2) and not 2 <= int(m.group(2)) <= 256:
        return f"index '{spec}': HNSW<M> needs 2 <= M <= 256 neighbours per node"
    if m.group(4) and m.group(4) != "auto" and not 1 <= int(m.group(4)) <= 1 << 20:
        return f"index '{spec}': IVF<nlist> needs 1 <= nlist <= {1 << 20} lists"
    pq = m.group(6) or m.group(8)
    if pq and int(pq) < 1:
        return f"index '{spec}': PQ<m> needs m >= 1 sub-quantizers"
    if m.group(7) and not 1 <= int(m.group(7)[1:]) <= 16:
        return f"index '{spec}': PQ<m>x<bits> needs 1 <= bits <= 16"
    return None


def check_index_for_dim(spec: str, dim: int) -> str | None:
    """`check_index_spec`, plus what depends on the embedding size (PQ<m> must divide it)."""
    problem = check_index_spec(spec)
    if problem:
        return problem
    m = INDEX_SPEC.match(spec)
    pq = m.group(6) or m.group(8)
    if pq and dim % int(pq):
        return (f"index '{spec}': PQ{pq} needs the embedding size ({dim}) to be a "
                f"multiple of {pq}")
    return None


def resolve_index_spec(spec: str) -> str:
    return INDEX_PRESETS.get(spec, spec)
