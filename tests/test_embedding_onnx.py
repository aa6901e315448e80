"""The onnx-int8 embedder backend: the same vectors as torch's, an export made once and reused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lte.cli import main
from lte.config import EmbedderConfig, MemoryConfig
from lte.embedding import make_embedder, resolve_embedder_path
from lte.embedding_onnx import (
    META_FILE,
    MODEL_FILE,
    OnnxEmbedder,
    _versions,
    cache_key,
    export_dir,
    read_pipeline,
)
from lte.errors import UserError

MINILM = resolve_embedder_path(EmbedderConfig().name)

# Questions of the kinds the memory stores, non-ASCII ones, and a text past the 256-token limit.
QUESTIONS = [
    "The mother tongue of Danielle Darrieux is", "Where Danielle Darrieux is from, people "
    "speak the language of", "Edwin of Northumbria's religious values strongly emphasize",
    "Toko Yasuda, the", "Autonomous University of Madrid, which is located in",
    "What is the twin city of Lyon?", "Who is the head of state of Germany?",
    "Apple A5 was created by", "Which company developed the Apple A5?", "Paris",
    "The official language of Finland is", "In Finland, people commonly speak",
    "Thomas Joannes Stieltjes was born in", "Which position does Lionel Messi play?",
    "Bell Labs is headquartered in", "What sport is Tom Brady associated with?",
    "Which river flows through Vienna?", "What is the capital of Australia?",
    "Who wrote The Old Man and the Sea?", "The Eiffel Tower is made of",
    "Zürich's main railway station is called", "Naïve café owners in São Paulo sell",
    "¿Dónde nació Gabriel García Márquez?", "Kyoto (京都) was the capital of Japan until",
    "The Danube, the Rhine, and the Elbe all flow into",
    "Which instrument did Miles Davis play professionally?",
    "The headquarters of Nintendo are located in the city of",
    "Insulin was discovered by a team at the University of",
    "Mount Kilimanjaro lies in which country?", "The inventor of the World Wide Web is",
    "river " * 300,
]
# Texts of one or two words: the [CLS]/[SEP] rows, whose activations set the int8 scales, are
# most of the mean there, so int8 strays further (measured: 0.97-0.98 against 0.99+ above).
FRAGMENTS = ["What?", "Ok.", "No", "Paris", "Who won?"]
SENTENCES = QUESTIONS + FRAGMENTS


@pytest.fixture(scope="module")
def onnx_embedder(tmp_path_factory):
    """One export for the module (it takes seconds), into a cache folder of its own."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    return make_embedder(EmbedderConfig(backend="onnx-int8", cache_dir=str(cache), threads=2))


@pytest.mark.slow
def test_onnx_vectors_agree_with_torch_per_sentence(onnx_embedder):
    assert isinstance(onnx_embedder, OnnxEmbedder) and onnx_embedder.exported
    torch_vecs = make_embedder(EmbedderConfig()).encode(SENTENCES)
    vecs = onnx_embedder.encode(SENTENCES)
    assert vecs.shape == torch_vecs.shape == (len(SENTENCES), 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    cosine = (vecs * torch_vecs).sum(axis=1)
    low = [(s[:40], round(float(c), 4)) for s, c in zip(SENTENCES, cosine, strict=True)
           if c <= 0.99]
    assert cosine[:len(QUESTIONS)].min() > 0.99, low
    assert cosine[len(QUESTIONS):].min() > 0.95, low
    # Activation scales are per batch, so a query embedded alone (as served) differs a little
    # from the same text in an ingest batch: alone it must agree with torch as well.
    one_by_one = np.concatenate([onnx_embedder.encode([s]) for s in QUESTIONS[:8]])
    assert (one_by_one * torch_vecs[:8]).sum(axis=1).min() > 0.99
    assert onnx_embedder.encode([]).shape == (0, 384)


@pytest.mark.slow
def test_second_load_reuses_the_export(onnx_embedder):
    from lte import embedding_onnx

    model = onnx_embedder.export_path
    stamp = model.stat().st_mtime_ns
    meta = json.loads((model.parent / META_FILE).read_text())
    assert meta["recipe"] == embedding_onnx.RECIPE and meta["onnxruntime"] == _versions()[
        "onnxruntime"]
    # A fresh process would start with no session cached: clear it, and make any export fail.
    embedding_onnx._session.cache_clear()
    saved = embedding_onnx._export
    embedding_onnx._export = lambda *a: pytest.fail("re-exported although the cache was there")
    try:
        again = make_embedder(onnx_embedder.cfg)
    finally:
        embedding_onnx._export = saved
    assert not again.exported and again.export_path == model
    assert model.stat().st_mtime_ns == stamp
    np.testing.assert_allclose(again.encode(SENTENCES[:4]), onnx_embedder.encode(SENTENCES[:4]),
                               atol=1e-6)
    assert not [p for p in model.parent.parent.iterdir() if p.name.startswith(".")], \
        "temporary export folders left behind"


def test_cache_key_changes_with_model_files_and_versions(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    versions = {"torch": "2.13.0", "transformers": "5.24.0", "onnx": "1.23.2",
                "onnxruntime": "1.31.1"}
    key = cache_key(model, versions)
    assert key == cache_key(model, dict(versions))
    assert key != cache_key(model, {**versions, "onnxruntime": "1.32.0"})
    (model / ".lte-onnx").mkdir()
    (model / ".lte-onnx" / "x").write_text("the cache itself is not part of the key")
    assert cache_key(model, versions) == key
    (model / "config.json").write_text('{"hidden_size": 8}')
    assert cache_key(model, versions) != key


def test_export_goes_beside_the_model_or_to_the_user_cache(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    assert export_dir(model).parent == model.resolve() / ".lte-onnx"
    assert export_dir(model, str(tmp_path / "c")).parent == tmp_path / "c"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    # A read-only install (root can write anywhere, so the check itself is stood in for).
    monkeypatch.setattr("lte.embedding_onnx.os.access", lambda path, mode: False)
    assert export_dir(model).parent == tmp_path / "xdg" / "lte" / "onnx"


def test_pipeline_is_read_from_the_models_own_files():
    pipe = read_pipeline(MINILM)
    assert (pipe.pooling, pipe.normalize, pipe.max_seq_length) == ("mean", True, 256)


def test_unsupported_model_folder_is_one_line(tmp_path):
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(UserError, match="Transformer, Pooling, Dense: use backend=torch"):
        read_pipeline(tmp_path)
    with pytest.raises(UserError, match="needs a sentence-transformers folder"):
        read_pipeline(tmp_path / "absent")
    assert not (tmp_path / MODEL_FILE).exists()


def test_bad_backend_is_refused_by_config_in_one_line():
    with pytest.raises(UserError) as e:
        MemoryConfig(embedder=EmbedderConfig(backend="onnx"))
    assert str(e.value).count("\n") == 0
    assert "embedder.backend='onnx' is not one of torch, onnx-int8" in str(e.value)
    with pytest.raises(UserError, match="onnx-int8 runs on the CPU"):
        EmbedderConfig(backend="onnx-int8", device="cuda")
    with pytest.raises(UserError, match="embedder.threads=-1 must be >= 0"):
        EmbedderConfig(threads=-1)


def test_bad_backend_on_the_command_line_exits_2(tmp_path, capsys):
    edits = tmp_path / "e.json"
    edits.write_text("[]")
    assert main(["memory", "build", "--edits", str(edits), "--out", str(tmp_path / "m"),
                 "embedder.backend=openvino"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "embedder.backend='openvino'" in err
    assert not (tmp_path / "m").exists()
