"""The shipped 7B/8B presets run, with only the model's size overridden.

Each preset's corpus and align YAML is loaded as shipped; the overrides point it at a 2-layer
model of the family's architecture class with random weights and a tokenizer trained here that
carries the family's special tokens and chat format (tests/chat_support.py). Then: corpus build
-> 2 optimizer steps -> the editor on 5 edits answers a query in the family's format.
(Single process without DeepSpeed; the ZeRO-3 path is covered by test_align_distributed.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chat_support import FAMILIES, family_tokenizer

REPO = Path(__file__).resolve().parents[1]

# preset -> (corpus preset, family, architecture). Qwen-7B-Chat's own class is remote code that
# ships with its weights; a Qwen2 model (the same ChatML tokens) stands in for it offline.
PRESETS = {
    "llama2-7b-chat": ("paper", "llama-2", "llama"),
    "qwen-7b-chat": ("qwen-7b-chat", "qwen", "qwen2"),
    "llama3.1-8b-instruct": ("llama3.1-8b-instruct", "llama-3.1", "llama"),
    "qwen2.5-7b-instruct": ("qwen2.5-7b-instruct", "qwen2.5", "qwen2"),
}
# What the user turn looks like to each family once the format is applied.
PROMPT_START = {"llama-2": "<s>[INST] ", "qwen": "<|im_start|>system\nYou are a helpful",
                "llama-3.1": "<|begin_of_text|><|start_header_id|>system",
                "qwen2.5": "<|im_start|>system\nYou are Qwen"}


def _base_model(root: Path, family: str, arch: str, texts: list[str]) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = family_tokenizer(FAMILIES[family], texts, vocab_size=500)
    eos = tok.eos_token_id if tok.eos_token_id is not None else tok.convert_tokens_to_ids(
        "<|endoftext|>")
    config = AutoConfig.for_model(arch, vocab_size=len(tok), hidden_size=32,
                                  intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=2, num_key_value_heads=2,
                                  max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
                                  eos_token_id=eos, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    out = root / "base"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_runs_corpus_align_and_edit(preset, tmp_path):
    from lte.align.recipe import run_alignment
    from lte.config import (
        AlignConfig,
        CorpusConfig,
        EditorConfig,
        ModelConfig,
        load_config,
    )
    from lte.corpus.build import build_corpus
    from lte.data.readers import read_records
    from lte.data.synth import write_world
    from lte.editor import LTEEditor
    from lte.prompts import EDIT_PROMPT_TEMPLATE

    corpus_preset, family, arch = PRESETS[preset]
    world = write_world(tmp_path / "world.json", 40, seed=5)
    records = read_records(world)
    texts = [EDIT_PROMPT_TEMPLATE, *(t for r in records for t in (r.descriptor, *r.ground_truth,
                                                                   *r.rephrase_prompts))]
    base = _base_model(tmp_path, family, arch, texts)

    corpus = tmp_path / "corpus"
    ccfg = load_config(CorpusConfig, REPO / f"configs/corpus/{corpus_preset}.yaml", [
        "sources=[]", "evaluation=[]", "instructions=null", "synth_edits=30", "synth_seed=5",
        "derived_instructions=[world]", "max_instructions=10", "answers=data",
        f"model.name_or_path={base}", "model.device=cpu", "model.dtype=float32",
        f"tokenizer={base}", "retriever.name=hashing", "retriever.device=cpu", "shards=1",
        f"out={corpus}"])
    manifest = build_corpus(ccfg, engine="local")
    assert manifest["examples"] > 50 and manifest["tokens"]["answer"] > 0

    acfg = load_config(AlignConfig, REPO / f"configs/align/{preset}.yaml", [
        f"corpus={corpus}", f"model.name_or_path={base}", "model.dtype=float32",
        "deepspeed=null", "max_steps=2", "device=cpu", "precision=fp32", "micro_batch_size=2",
        "global_batch_size=4", "gradient_checkpointing=false", "max_length=512",
        "save_steps=100", "wandb.project=null", "torch_threads=1", f"out={tmp_path / 'align'}"])
    assert acfg.model.chat_format == ccfg.model.chat_format  # corpus and alignment agree
    final = run_alignment(acfg)

    # the aligned checkpoint carries its format: eval/serve load it with `chat_format: tokenizer`
    editor = LTEEditor.from_config(EditorConfig(model=ModelConfig(
        name_or_path=str(final), device="cpu", max_new_tokens=3)))
    editor.edit(records[:5])
    prompt = editor.build_prompt(records[0].prompt, [records[0].descriptor])
    assert prompt.startswith(PROMPT_START[family])
    [answer] = editor.answer([records[0].prompt])
    assert isinstance(answer.text, str) and answer.hits
