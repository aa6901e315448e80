"""The `onnx-int8` embedder backend: a sentence-transformers model exported to ONNX, int8 weights.

Made once per model and cached (`export_dir`): `torch.onnx.export` of the transformer with the
model's pooling inside the graph, ONNX Runtime's BERT fusions (attention, GELU, layer norm),
then `quantize_dynamic` with int8 weights per output channel. The feed-forward down-projections
stay fp32: their inputs are GELU outputs whose outliers per-tensor activation scales crush
(measured on counterfact-edit prompts: min cosine to torch 0.984 quantizing them, 0.991 not).
Encoding is the sentence-transformers pipeline of the model (its tokenizer and max_seq_length,
`modules.json`'s pooling, Normalize), with batches of similar length so padding costs little.

The cache lives beside the model when that folder is writable (it goes away with the model's
install, and every process using that install shares it), else under the user cache dir; it is
keyed by the model files, the opset and the torch / transformers / onnx / onnxruntime versions,
so any of them changing re-exports instead of loading a stale graph.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lte.config import EmbedderConfig
from lte.errors import UserError

OPSET = 17
RECIPE = "int8-per-channel-fp32-ffn-out-v1"  # change when the export steps change
MODEL_FILE = "model.onnx"
META_FILE = "export.json"
CACHE_SUBDIR = ".lte-onnx"
_GELUS = {"Gelu", "BiasGelu", "FastGelu"}
_POOLINGS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}


@dataclass(frozen=True)
class Pipeline:
    """What sentence-transformers does with this model, read from its own files."""

    transformer_dir: Path
    pooling: str  # mean | cls
    normalize: bool  # a Normalize module follows pooling
    max_seq_length: int
    lower_case: bool


def read_pipeline(model_dir: str | Path) -> Pipeline:
    """The Transformer -> Pooling (-> Normalize) pipeline of a sentence-transformers folder."""
    root = Path(model_dir)
    try:
        modules = json.loads((root / "modules.json").read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"backend onnx-int8 needs a sentence-transformers folder with "
                        f"modules.json ({e})", file=str(root), field="embedder.name") from None
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or set(kinds[2:]) - {"Normalize"}:
        raise UserError(f"backend onnx-int8 handles Transformer, Pooling (, Normalize) models; "
                        f"this one is {', '.join(kinds)}: use backend=torch", file=str(root),
                        field="embedder.backend")
    tdir = root / modules[0].get("path", "")
    pool_cfg = json.loads((root / modules[1]["path"] / "config.json").read_text())
    modes = [name for key, name in _POOLINGS.items() if pool_cfg.get(key)]
    others = [k for k, v in pool_cfg.items() if k.startswith("pooling_mode") and v
              and k not in _POOLINGS]
    if len(modes) != 1 or others:
        raise UserError(f"backend onnx-int8 handles mean or cls pooling; this model pools "
                        f"{modes + others}: use backend=torch", file=str(root),
                        field="embedder.backend")
    st_cfg = {}
    if (tdir / "sentence_bert_config.json").is_file():
        st_cfg = json.loads((tdir / "sentence_bert_config.json").read_text())
    max_len = st_cfg.get("max_seq_length") or json.loads(
        (tdir / "config.json").read_text()).get("max_position_embeddings", 512)
    return Pipeline(tdir, modes[0], "Normalize" in kinds, int(max_len),
                    bool(st_cfg.get("do_lower_case", False)))


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def cache_key(model_dir: str | Path, versions: dict[str, str] | None = None) -> str:
    """Changes with any model file (path, size, mtime), the opset, the recipe or a version."""
    root = Path(model_dir).resolve()
    files = sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in root.rglob("*")
                   if p.is_file() and CACHE_SUBDIR not in p.relative_to(root).parts)
    blob = json.dumps({"model": str(root), "files": files, "opset": OPSET, "recipe": RECIPE,
                       "versions": versions if versions is not None else _versions()})
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def export_dir(model_dir: str | Path, cache_dir: str | None = None) -> Path:
    """Where this model's export lives (see the module doc for why there)."""
    root = Path(model_dir).resolve()
    if cache_dir:
        base = Path(cache_dir)
    elif os.access(root, os.W_OK):
        base = root / CACHE_SUBDIR
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lte" / "onnx"
    return base / f"{root.name}-{cache_key(root)}"


def _export(pipe: Pipeline, out: Path) -> None:
    """fp32 ONNX with pooling in the graph -> fused -> int8 weights, all under `out`."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(pipe.transformer_dir)
    # eager attention exports as plain ops, which ORT's optimizer fuses into its Attention op.
    model = AutoModel.from_pretrained(pipe.transformer_dir, attn_implementation="eager").eval()
    cls_pool = pipe.pooling == "cls"

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            h = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if cls_pool:
                return h[:, 0]
            mask = attention_mask.unsqueeze(-1).to(h.dtype)
            return (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    fp32, fused = out / "fp32.onnx", out / "fused.onnx"
    dummy = torch.ones(2, 16, dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
            "embedding": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(Pooled(), (dummy, dummy), str(fp32), opset_version=OPSET,
                          input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"], dynamic_axes=axes, dynamo=False)
    graph = optimize_model(str(fp32), model_type="bert",
                           num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
                           hidden_size=int(getattr(config, "hidden_size", 0) or 0))
    graph.save_model_to_file(str(fused))
    made_by = {o for n in graph.model.graph.node for o in n.output if n.op_type in _GELUS}
    keep_fp32 = [n.name for n in graph.model.graph.node
                 if n.op_type == "MatMul" and made_by.intersection(n.input)]
    quantize_dynamic(str(fused), str(out / MODEL_FILE), weight_type=QuantType.QInt8,
                     per_channel=True, nodes_to_exclude=keep_fp32,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    fp32.unlink()
    fused.unlink()


def ensure_export(model_dir: str | Path, cache_dir: str | None = None) -> tuple[Path, bool]:
    """The cached int8 model for `model_dir`, exporting it first if absent: (path, exported)."""
    target = export_dir(model_dir, cache_dir)
    if (target / MODEL_FILE).is_file() and (target / META_FILE).is_file():
        return target / MODEL_FILE, False
    pipe = read_pipeline(model_dir)
    shutil.rmtree(target, ignore_errors=True)  # an incomplete folder left by hand
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError as e:
        raise UserError(f"cannot write the onnx-int8 export ({e.strerror}); set "
                        f"embedder.cache_dir to a writable folder", file=str(target),
                        field="embedder.cache_dir") from None
    try:
        start = time.monotonic()
        _export(pipe, tmp)
        (tmp / META_FILE).write_text(json.dumps({
            "model": str(Path(model_dir).resolve()), "opset": OPSET, "recipe": RECIPE,
            **_versions(), "export_seconds": round(time.monotonic() - start, 2)}, indent=1))
        try:
            os.rename(tmp, target)  # atomic: a reader sees no export or a whole one
        except OSError:
            if not (target / MODEL_FILE).is_file():  # not a concurrent exporter's win
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / MODEL_FILE, True


@functools.lru_cache(maxsize=4)
def _session(path: str, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


class OnnxEmbedder:
    """Encodes texts like `Embedder` for the same model, on ONNX Runtime with int8 weights."""

    def __init__(self, cfg: EmbedderConfig, model_dir: str):
        import torch

        self.cfg = cfg
        self.name = cfg.name
        self.device = "cpu"
        self.pipeline = read_pipeline(model_dir)
        path, self.exported = ensure_export(model_dir, cfg.cache_dir)
        self.export_path = path
        # threads 0: as many as torch uses in this process, so a serve replica's torch_threads
        # bounds both backends alike.
        self.threads = cfg.threads or torch.get_num_threads()
        self.session = _session(str(path), self.threads)
        self.tokenizer = _tokenizer(str(self.pipeline.transformer_dir))
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if len(texts) == 0:
            return out
        if self.pipeline.lower_case:
            texts = [t.lower() for t in texts]
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.pipeline.max_seq_length,
                             add_special_tokens=True)["input_ids"]
        pad = self.tokenizer.pad_token_id or 0
        # Longest first, as sentence-transformers: a batch pads to its own longest text only.
        order = np.argsort([-len(x) for x in ids], kind="stable")
        size = self.cfg.batch_size
        starts = range(0, len(order), size)
        if show_progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="embed", unit="batch")
        for start in starts:
            rows = order[start:start + size]
            width = len(ids[rows[0]])
            batch = np.full((len(rows), width), pad, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                batch[r, :len(ids[i])] = ids[i]
                mask[r, :len(ids[i])] = 1
            out[rows] = self.session.run(None, {"input_ids": batch, "attention_mask": mask})[0]
        if self.pipeline.normalize or self.cfg.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.maximum(norms, 1e-12)
        return out
