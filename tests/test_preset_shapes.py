"""The shipped 7B/8B presets run every stage, with only the model's size overridden.

For each of llama2-7b-chat, qwen-7b-chat, llama3.1-8b-instruct and qwen2.5-7b-instruct, the
stage YAMLs are loaded as shipped; the overrides point them at a 2-layer model of the family's
architecture class with random weights and a tokenizer trained here that carries the family's
special tokens and chat format (tests/chat_support.py), and change what a CPU cannot do (each
override below says why). The stages, as a user runs them:
1. corpus build (`build_corpus`, local engine) from the preset's corpus YAML;
2. `launch/align.sh configs/align/<preset>.yaml`: 2 optimizer steps of ZeRO-3 over 2 gloo
   processes with the preset's own `configs/deepspeed/zero3.json`, bf16, micro batch, gradient
   checkpointing and packing (global batch 16, not 128);
3. `lte eval` (the CLI) on 5 edits of the aligned final/ with the preset's model settings
   (chat format, trust_remote_code, dtype);
4. `lte serve --config configs/serve/<preset>.yaml` joined to one Ray cluster shared by the four
   presets (the presets' `ray_address`; token auth), 5 edits in over HTTP, one query whose
   answer and teacher-forced argmax are those of the family-format prompt in this process.
Measured under load (README, Tests): the serve step is most of the time.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from chat_support import FAMILIES, family_tokenizer
from serve_support import RayHead, ServerProcess

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TOKEN = "preset-token-0123456789"
N_EDITS = 5


@dataclass(frozen=True)
class Preset:
    corpus: str  # configs/corpus/<corpus>.yaml
    family: str  # tests/chat_support.FAMILIES
    arch: str  # transformers model type of the stand-in
    prompt_start: str  # the user turn once the family's format is applied
    end_of_turn: str  # the token the loss learns after the answer and generation stops at


# Qwen-7B-Chat's own class is remote code that ships with its weights; a Qwen2 model (the same
# ChatML tokens) stands in for it offline.
PRESETS = {
    "llama2-7b-chat": Preset("paper", "llama-2", "llama", "<s>[INST] ", "</s>"),
    "qwen-7b-chat": Preset("qwen-7b-chat", "qwen", "qwen2",
                           "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n",
                           "<|im_end|>"),
    "llama3.1-8b-instruct": Preset("llama3.1-8b-instruct", "llama-3.1", "llama",
                                   "<|begin_of_text|><|start_header_id|>system", "<|eot_id|>"),
    "qwen2.5-7b-instruct": Preset("qwen2.5-7b-instruct", "qwen2.5", "qwen2",
                                  "<|im_start|>system\nYou are Qwen", "<|im_end|>"),
}
ARCH_CLASS = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
LOSS_LINE = re.compile(r"\{'loss': '([0-9.e+-]+|nan|inf)'")

# What a CPU box cannot do, the same for every preset:
CPU = [
    "device=cpu",  # no GPU: gloo instead of NCCL
    "torch_threads=1",  # 2 processes on 2 cores
    "wandb.project=null",  # no W&B run from a test
]


@dataclass
class Aligned:
    name: str
    preset: Preset
    root: Path
    world: Path
    base: Path
    final: Path
    log: str


def _base_model(root: Path, family: str, arch: str, texts: list[str]) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = family_tokenizer(FAMILIES[family], texts, vocab_size=500)
    eos = tok.eos_token_id if tok.eos_token_id is not None else tok.convert_tokens_to_ids(
        "<|endoftext|>")
    config = AutoConfig.for_model(arch, vocab_size=len(tok), hidden_size=32,
                                  intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=2, num_key_value_heads=2,
                                  max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                                  eos_token_id=eos, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    out = root / "base"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _serve_model(name: str):
    """The serve preset's model block: how the aligned checkpoint of this family is loaded."""
    from lte.config import ServeConfig, load_config

    return load_config(ServeConfig, REPO / f"configs/serve/{name}.yaml").model


def _model_settings(name: str) -> list[str]:
    model = _serve_model(name)
    return [f"model.chat_format={model.chat_format}",
            f"model.trust_remote_code={str(model.trust_remote_code).lower()}",
            f"model.dtype={model.dtype}"]


@pytest.fixture(scope="module", params=sorted(PRESETS))
def aligned(request, tmp_path_factory) -> Aligned:
    """Corpus build, then 2 ZeRO-3 steps over 2 gloo processes through launch/align.sh."""
    from lte.config import CorpusConfig, load_config
    from lte.corpus.build import build_corpus
    from lte.data.readers import read_records
    from lte.data.synth import write_world
    from lte.prompts import EDIT_PROMPT_TEMPLATE

    name = request.param
    preset = PRESETS[name]
    root = tmp_path_factory.mktemp(name)
    world = write_world(root / "world.json", 40, seed=5)
    records = read_records(world)
    texts = [EDIT_PROMPT_TEMPLATE, *(t for r in records for t in (r.descriptor, *r.ground_truth,
                                                                   *r.rephrase_prompts))]
    base = _base_model(root, preset.family, preset.arch, texts)

    corpus = root / "corpus"
    ccfg = load_config(CorpusConfig, REPO / f"configs/corpus/{preset.corpus}.yaml", [
        # the synthetic world instead of the benchmark files, its answers (no base-model pass)
        "sources=[]", "evaluation=[]", "instructions=null", "synth_edits=30", "synth_seed=5",
        "derived_instructions=[world]", "max_instructions=10", "answers=data",
        # the stand-in model; no GPU; hashing retrieval (multi-qa-mpnet is a download)
        f"model.name_or_path={base}", f"tokenizer={base}", "model.device=cpu",
        "retriever.name=hashing", "retriever.device=cpu", "shards=1", f"out={corpus}"])
    manifest = build_corpus(ccfg, engine="local")
    assert manifest["examples"] > 50 and manifest["tokens"]["answer"] > 0

    out = root / "align"
    env = {**os.environ, "LAUNCHER": "torchrun", "NPROC": "2", "WANDB_MODE": "offline"}
    cmd = [str(REPO / "launch" / "align.sh"), f"configs/align/{name}.yaml", "--out", str(out),
           f"corpus={corpus}", f"model.name_or_path={base}", "max_steps=2", *CPU,
           # bf16 as shipped (DeepSpeed's bf16 optimizer runs on CPU over gloo). The preset's
           # 128 sequences per step would be 16 micro batches per process and step: 2 here.
           "global_batch_size=16"]
    done = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=900)
    log = done.stdout.decode(errors="replace")
    (root / "align.log").write_text(log)
    assert done.returncode == 0, log[-4000:]
    return Aligned(name, preset, root, world, base, out / "final", log)


def test_zero3_over_two_processes_trains_and_saves_the_family_format(aligned):
    from transformers import AutoConfig

    from lte.config import AlignConfig, load_config
    from lte.layout import read_meta
    from lte.modeling.load import load_tokenizer
    from lte.prompts import tokenize_chat

    shipped = load_config(AlignConfig, REPO / f"configs/align/{aligned.name}.yaml")
    meta = read_meta(aligned.final)
    assert (meta["zero_stage"], meta["world_size"], meta["global_step"]) == (3, 2, 2)
    assert meta["config"]["deepspeed"] == shipped.deepspeed == "configs/deepspeed/zero3.json"
    assert meta["config"]["packing"] == shipped.packing
    assert (meta["config"]["precision"], meta["config"]["model"]["dtype"]) == (
        shipped.precision, shipped.model.dtype)
    losses = [h["loss"] for h in meta["loss_history"]]
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses), losses
    assert len(LOSS_LINE.findall(aligned.log)) == 2

    # final/ is a plain checkpoint of the family's class whose tokenizer carries the format
    # trained on: loaded with `chat_format: tokenizer` it renders the family's prompt.
    assert AutoConfig.from_pretrained(aligned.final).architectures == [
        ARCH_CLASS[aligned.preset.arch]]
    tok = load_tokenizer(str(aligned.final), "tokenizer")
    ids, labels = tokenize_chat(tok, [{"role": "user", "content": "Who?"},
                                      {"role": "assistant", "content": "Nobody"}])
    text = tok.decode(ids)
    assert text.startswith(aligned.preset.prompt_start), text
    learned = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab != -100])
    assert learned.strip().endswith(aligned.preset.end_of_turn), learned


def test_lte_eval_cli_scores_five_edits(aligned):
    from lte.cli import main

    out = aligned.root / "eval"
    rc = main(["eval", "--model", str(aligned.final), "--data", str(aligned.world),
               "--methods", "lte", "--protocol", "batch", "--sizes", str(N_EDITS),
               "--out", str(out), *_model_settings(aligned.name),
               "model.device=cpu", "memory.embedder.name=hashing", "fluency_tokens=16"])
    assert rc == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert {(r["method"], r["protocol"], r["size"]) for r in runs} == {("lte", "batch", N_EDITS)}
    for r in runs:
        assert r["n_cases"] == N_EDITS
        m = r["metrics"]
        for key in ("edit_succ", "locality", "fluency", "fluency_gen", "retrieval_hit1"):
            assert m[key] is not None and math.isfinite(m[key]), (r["aggregation"], key)
        assert 0.0 <= m["edit_succ"] <= 1.0 and m["retrieval_hit1"] == 1.0
    resolved = (out / "config.yaml").read_text()
    assert "trust_remote_code: " + str(aligned.name == "qwen-7b-chat").lower() in resolved


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """One Ray cluster for the four servers: each joins it as its preset's `ray_address` says."""
    from lte.serve.server import SLOW_MACHINE_ENV, THROUGHPUT_ENV

    # What launch/serve_env.sh gives a real cluster, and lte serve's start-up deadlines for a
    # busy CPU box (a local lte serve sets both in the Ray it starts). 16 logical CPUs: the
    # presets' replicas ask for 4 (Generator) + 1 per shard + 0.25 per ingress.
    head = RayHead(tmp_path_factory.mktemp("ray-head"), num_cpus=16,
                   env={**SLOW_MACHINE_ENV, **THROUGHPUT_ENV})
    head.start()
    yield head
    head.stop()


def test_lte_serve_answers_in_the_family_format(aligned, ray_head):
    from lte.data.readers import read_records
    from lte.editor import LTEEditor
    from lte.modeling.load import load_model_and_tokenizer
    from lte.prompts import RAW

    records = read_records(aligned.world)[:N_EDITS]
    server = ServerProcess(
        aligned.root / "serve-memory", str(aligned.final), TOKEN, None,
        aligned.root / "serve.log", config=REPO / f"configs/serve/{aligned.name}.yaml",
        env=ray_head.env, extra=(
            f"ray_address={ray_head.address}",  # the test's cluster, not whatever `auto` finds
            "host=127.0.0.1",  # a test listens on loopback only
            # no GPU: the Generator and shards on CPUs, one Generator (0 = one per GPU)
            "model.device=cpu", "generator_num_gpus=0", "shard_num_gpus=0",
            "generator_replicas=1", "torch_threads=1",
            # each replica is a process importing torch: 2 shards and 1 ingress (not 4 and 2) on
            # 2 cores; the preset's shard and ingress counts are what a cluster runs
            "memory.shards=2", "ingress_replicas=1",
            "memory.embedder.name=hashing", "memory.embedder.device=cpu"))
    server.start()
    try:
        body = {"edits": [{"subject": r.subject, "prompt": r.prompt, "target_new": r.target_new}
                          for r in records]}
        got = httpx.post(f"{server.url}/v1/edits", json=body, headers=server.auth, timeout=120)
        assert got.status_code == 200, got.text
        assert httpx.get(f"{server.url}/healthz").json() == {
            "status": "ok", "shards": 2, "edits": N_EDITS}
        r = records[0]
        query = {"question": r.prompt, "targets": [r.target_new]}
        served = httpx.post(f"{server.url}/v1/query", json=query, timeout=120)
        assert served.status_code == 200, served.text
        served = served.json()
    finally:
        server.stop()
    assert served["retrieved"][0]["descriptor"] == r.descriptor

    # The same checkpoint in this process, loaded as the serve preset's Generator loads it: the
    # served answer and teacher-forced argmax are the family-format prompt's, not a plain one's.
    model, tok = load_model_and_tokenizer(replace(_serve_model(aligned.name),
                                                  name_or_path=str(aligned.final), device="cpu"))
    editor = LTEEditor(model, tok, None, top_k=None, batch_size=4,
                       max_new_tokens=_serve_model(aligned.name).max_new_tokens)
    descriptors = [[r.descriptor]]
    prompt = editor.build_prompt(r.prompt, [r.descriptor])
    assert prompt.startswith(aligned.preset.prompt_start), prompt
    assert tok.convert_tokens_to_ids(aligned.preset.end_of_turn) in editor._stop_ids
    [local] = editor.answer([r.prompt], descriptors=descriptors)
    assert served["answer"] == local.text
    [family] = editor.predict_tokens([r.prompt], [r.target_new], descriptors=descriptors)
    [plain] = editor.predict_tokens([r.prompt], [r.target_new], descriptors=descriptors, fmt=RAW)
    [pred] = served["predictions"]
    assert pred["target_ids"] == family.target
    assert pred["predicted_ids"] == family.predicted != plain.predicted
