"""Which shard holds an edit, and service ids that are unique across shards.

Placement: an edit goes to the shard picked by a stable hash (BLAKE2b, not Python's salted
`hash`) of its subject, case and whitespace folded (lte.memory.conflicts.normalise); an edit
without a subject, by its question. Edits that may supersede one another (one subject, the same
fact in any wording) therefore meet in one shard's log, where EditMemory resolves the conflict
exactly as a single memory would, and sharded search returns what single-shard search returns.
Folders first served before this rule (their `serve.json` names no placement) keep the one they
were built with: the stripped subject and question.

Ids: each shard's EditMemory numbers its own edits in its own log; the service id is
`local_id * n_shards + shard`. An id names its shard (`id % n_shards`) without a lookup table,
ids never collide across shards, and they survive restarts because the shard logs own the
numbering. The shard count is thus fixed for a memory folder: `serve.json` in the root records
it, and opening the folder with another count is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lte.errors import UserError
from lte.layout import SERVE_MANIFEST
from lte.memory.conflicts import normalise

SUBJECT, SUBJECT_QUESTION = "subject", "subject+question"  # the latter: folders of before


def placement_key(subject: str, prompt: str, placement: str = SUBJECT) -> str:
    if placement == SUBJECT_QUESTION:
        return f"{subject.strip()}\x1f{prompt.strip()}"
    return normalise(subject) or f"\x1f{normalise(prompt)}"


def shard_of(subject: str, prompt: str, n_shards: int, placement: str = SUBJECT) -> int:
    key = placement_key(subject, prompt, placement)
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n_shards


def root_placement(root: str | Path) -> str:
    """The placement rule of a served memory folder (prepare_root has checked its manifest)."""
    content = json.loads((Path(root) / SERVE_MANIFEST).read_text())
    return content.get("placement", SUBJECT_QUESTION)


def to_global(local_id: int, shard: int, n_shards: int) -> int:
    return int(local_id) * n_shards + shard


def from_global(edit_id: int, n_shards: int) -> tuple[int, int]:
    """(shard, local id) of a service id."""
    return edit_id % n_shards, edit_id // n_shards


def shard_dir(root: str | Path, shard: int) -> Path:
    return Path(root) / f"shard-{shard:03d}"


def prepare_root(root: str | Path, n_shards: int, embedder: str | None = None) -> list[Path]:
    """Create the root folder (or check it against its manifest); the shard folders it holds.

    Each shard folder is an EditMemory folder, created by its shard replica on first start. The
    manifest also names the embedder: the ingress embeds questions for all shards, so it must be
    the one the shards' indexes were built with.
    """
    root = Path(root).resolve()
    manifest = root / SERVE_MANIFEST
    if manifest.is_file():
        try:
            content = json.loads(manifest.read_text())
            recorded, recorded_embedder = content["shards"], content.get("embedder")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UserError("not a serve manifest (expected {\"shards\": N})",
                            file=str(manifest)) from None
        if recorded != n_shards:
            raise UserError(f"this memory folder holds {recorded} shards but memory.shards="
                            f"{n_shards}; ids encode the shard, so use memory.shards={recorded} "
                            "or a new memory_dir", file=str(manifest))
        if embedder and recorded_embedder and recorded_embedder != embedder:
            raise UserError(f"this memory folder was built with the embedder "
                            f"'{recorded_embedder}' but memory.embedder.name='{embedder}'; "
                            "use the same embedder or a new memory_dir", file=str(manifest))
    else:
        if root.exists() and any(root.iterdir()):
            raise UserError(f"folder exists and has no {SERVE_MANIFEST}; serve a new or an lte serve "
                            "memory folder", file=str(root))
        root.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps({"shards": n_shards, "embedder": embedder,
                                        "placement": SUBJECT}) + "\n")
    return [shard_dir(root, i) for i in range(n_shards)]


def merge_hits(per_shard: list[list[dict]], k: int) -> list[dict]:
    """Top-k over all shards' top-k lists: highest score first, ties broken by id."""
    hits = [h for shard_hits in per_shard for h in shard_hits]
    hits.sort(key=lambda h: (-h["score"], h["id"]))
    return hits[:k]
