"""The tiny model factory, its tokenizer, loading, and the shipped pre-aligned checkpoint."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from lte.config import ModelConfig
from lte.data import synth
from lte.errors import UserError
from lte.modeling.load import PACKAGED, load_model_and_tokenizer, resolve_model_path
from lte.modeling.tiny import TinyModelConfig, build_tiny_model, save_tiny, train_tokenizer
from lte.prompts import IGNORE_INDEX, prompt_and_target_ids, tokenize_chat, user_messages

SMALL = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=2)


def _texts(n=200):
    recs = list(synth.generate_world(n, 1))
    return [f"{r['prompt']} {r['target_new']}" for r in recs] + [
        q for r in recs for q in r["rephrase_prompt"]]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(_texts(), vocab_size=400)


def test_tokenizer_is_deterministic_and_has_special_tokens(tok):
    again = train_tokenizer(_texts(), vocab_size=400)
    assert tok.get_vocab() == again.get_vocab()
    text = "Where was Trala Sufil born? Kuzalun"
    assert tok(text)["input_ids"] == again(text)["input_ids"]
    assert tok.bos_token and tok.eos_token and tok.pad_token
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    assert tok(text)["input_ids"][0] == tok.bos_token_id
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]).strip() == text


def test_chat_template_and_answer_copyable_from_descriptor(tok):
    desc = "Where was Trala Sufil born? Kuzalun"
    msgs = [*user_messages("In which city was Trala Sufil born?", [desc]),
            {"role": "assistant", "content": "Kuzalun"}]
    text = tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
    assert text.startswith(tok.bos_token) and text.endswith("<|assistant|>")
    ids, labels = tokenize_chat(tok, msgs)
    answer = [t for t in labels if t != IGNORE_INDEX]
    assert answer[-1] == tok.eos_token_id
    # The answer's tokens appear verbatim inside the descriptor: copying is token for token.
    n = len(answer) - 1
    prompt = ids[: len(ids) - len(answer)]
    assert any(prompt[i: i + n] == answer[:-1] for i in range(len(prompt)))
    p, t = prompt_and_target_ids(tok, "In which city was Trala Sufil born?", [desc], "Kuzalun")
    assert p + t + [tok.eos_token_id] == ids


def test_save_load_round_trip_gives_the_same_logits(tmp_path, tok):
    model = build_tiny_model(SMALL, tok).eval()
    out = save_tiny(model, tok, tmp_path / "m", {"command": "test", "data_seed": 1})
    assert json.loads((out / "lte_meta.json").read_text())["data_seed"] == 1
    loaded, tok2 = load_model_and_tokenizer(ModelConfig(name_or_path=str(out), device="cpu"))
    ids = torch.tensor([tok("Who is Laso Mefik married to?")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-6)
    assert tok2.pad_token_id == tok.pad_token_id
    assert tok2.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                    add_generation_prompt=True) == tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    same_model, _ = load_model_and_tokenizer(str(out))  # a plain path string works too
    assert same_model.config.hidden_size == SMALL.hidden_size


def test_build_is_seeded(tok):
    a, b = build_tiny_model(SMALL, tok), build_tiny_model(SMALL, tok)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_resolve_names():
    assert resolve_model_path("some/hub-id") == "some/hub-id"
    with pytest.raises(UserError, match="unknown packaged model"):
        resolve_model_path("lte:nope")


def test_bad_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot load"):
        load_model_and_tokenizer(str(tmp_path / "missing"))


def _shipped():
    path = PACKAGED["lte:tiny"]
    if not (path / "config.json").is_file():
        pytest.skip(f"the shipped checkpoint {path} is not built")
    return path


def test_shipped_checkpoint_loads_and_says_how_it_was_made():
    path = _shipped()
    assert resolve_model_path("lte:tiny") == str(path)
    meta = json.loads((path / "lte_meta.json").read_text())
    assert meta["command"].startswith("python tools/make_tiny_checkpoint.py")
    assert isinstance(meta["data_seed"], int)
    assert 0 <= meta["heldout_final"]["edit_succ"] <= 1
    model, tok = load_model_and_tokenizer("lte:tiny")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) < 5_000_000


def test_shipped_checkpoint_applies_an_edit_it_has_never_seen():
    """Behaviour, not just loading: new people, a made-up object, asked with a paraphrase."""
    _shipped()
    model, tok = load_model_and_tokenizer("lte:tiny")
    world_seed = 777  # not the recipe's training or evaluation seed
    hits = 0
    recs = list(synth.generate_world(20, world_seed))
    for r in recs:
        q = r["rephrase_prompt"][0]
        p, t = prompt_and_target_ids(tok, q, [f"{r['prompt']} {r['target_new']}"], r["target_new"])
        with torch.no_grad():
            logits = model(torch.tensor([p + t])).logits[0, len(p) - 1: len(p) + len(t) - 1]
        hits += int(logits.argmax(-1).tolist() == t)
    assert hits >= 15, f"{hits}/20 edits answered exactly"  # 18/20 when shipped


def _recipe_module(monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "make_tiny_checkpoint.py"
    spec = importlib.util.spec_from_file_location("make_tiny_checkpoint", path)
    recipe = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, recipe)  # dataclasses look their module up
    spec.loader.exec_module(recipe)
    return recipe


TOY_RECIPE = ["steps=4", "eval_every=2", "train_edits=30", "eval_edits=8",
              "final_eval_edits=8", "model.hidden_size=32", "model.num_hidden_layers=2",
              "model.num_attention_heads=2", "model.num_key_value_heads=2",
              "model.intermediate_size=64", "model.vocab_size=400", "batch_size=8",
              "unknown_people=20"]


def test_recipe_fast_path_builds_a_loadable_checkpoint(tmp_path, monkeypatch):
    """tools/make_tiny_checkpoint.py end to end at toy size: the YAML recipe with overrides,
    data, tokenizer, training, held-out evaluation by lte.eval, a checkpoint whose meta says how
    to remake it, and --eval-only on it reproducing its final figures. Synthetic world only
    (real_corpus=null): the real part is the next test's."""
    recipe = _recipe_module(monkeypatch)
    shipped = recipe.load_config(recipe.RecipeConfig, recipe.RECIPE)
    assert shipped.model.hidden_size == 128 and sum(shipped.mix.values()) == pytest.approx(1.0)
    with pytest.raises(UserError, match="steps"):
        recipe.parse_args(["steps=many"])
    out = tmp_path / "tiny"
    overrides = [*TOY_RECIPE, "real_corpus=null", "real_dev=null"]
    meta = recipe.main(["--out", str(out), *overrides])
    assert meta["steps"] == 4 and len(meta["curve"]) == 2
    assert "steps=4" in meta["command"] and meta["data_seed"] == 1
    saved = json.loads((out / "lte_meta.json").read_text())
    final = saved["heldout_final"]
    assert final["n_edits"] == 8 and final["gate"] == shipped.gate
    assert 0 <= final["locality"] <= 1 and 0 <= final["gated_locality"] <= 1
    assert final["retrieval_hit1"] > 0.5  # MiniLM finds most paraphrases' own edit
    assert (tmp_path / "tiny.log.jsonl").read_text().count("\n") == 2
    model, tok = load_model_and_tokenizer(str(out))
    assert model.config.hidden_size == 32 and tok.chat_template
    again = recipe.main(["--out", str(out), "--eval-only", "final_eval_edits=8", "real_dev=null"])
    assert again["heldout_final"] == pytest.approx(final)
    assert "real_edit_succ" not in final


def test_recipe_real_part_trains_on_leakage_filtered_sources_with_new_objects(
        tmp_path, monkeypatch, shared_data):
    """The shipped recipe's real part at toy size: real training edits without any subject of
    the evaluation files, new objects per variant drawn from the sources' answers, a tokenizer
    that knows real words, and development figures on counterfact-val in the meta."""
    from lte.corpus.sources import evaluation_subjects, subject_key
    from lte.embedding import Embedder

    recipe = _recipe_module(monkeypatch)
    cfg = recipe.load_config(recipe.RecipeConfig, recipe.RECIPE,
                             ["real_edits=300"])
    assert cfg.real_corpus and cfg.mix.get("real", 0) > 0
    real = recipe.RealEdits(cfg, Embedder())
    assert len(real.records) == 300 and real.dropped > 0
    corpus = recipe.load_config(recipe.CorpusConfig, cfg.real_corpus, [])
    banned = {subject_key(s) for subs in evaluation_subjects(corpus.evaluation).values()
              for s in subs}
    assert not {subject_key(r.subject) for r in real.records} & banned
    first, second = real.variant(), real.variant()
    changed = [a.target_new != b.target_new for a, b in zip(first, second, strict=True)]
    assert 0.6 < sum(changed) / len(changed) < 1.0  # real_fresh_share 0.8 per variant
    assert all(r.target_new in real.pool for r, o in zip(second, real.records, strict=True)
               if r.target_new != o.target_new)
    buckets = real.buckets()
    assert buckets["real"] and all(ex.with_edit for ex in buckets["real"])

    out = tmp_path / "tiny"
    meta = recipe.main(["--recipe", str(recipe.RECIPE),
                        "--out", str(out), *TOY_RECIPE, "real_edits=60", "real_dev_edits=8",
                        "real_final_edits=8", "model.vocab_size=1200"])
    final = meta["heldout_final"]
    assert final["real_n"] == 8 and 0 <= final["real_edit_succ"] <= 1
    assert 0 <= final["real_gated_locality"] <= 1 and "real_edit_succ" in meta["curve"][0]
    _, tok = load_model_and_tokenizer(str(out))
    synthetic_only = train_tokenizer(synth.record_texts(synth.synth_records(30, 1)), 1200)
    answers = [r.target_new for r in real.records]

    def tokens(t):
        return sum(len(ids) for ids in t(answers, add_special_tokens=False)["input_ids"])

    assert tokens(tok) < 0.8 * tokens(synthetic_only)  # real words: fewer, longer tokens
