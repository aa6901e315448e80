"""lte.align in one process: config presets, corpus loading, collator, batch arithmetic, resume
points, tracking, the CLI's errors, and a whole single-process run without DeepSpeed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lte.align.checkpoint import checkpoints, newest_checkpoint
from lte.align.data import load_corpus
from lte.align.distributed import load_deepspeed_config, zero_stage
from lte.align.recipe import grad_accumulation
from lte.align.tracking import Throughput, setup_wandb
from lte.config import AlignConfig, load_config
from lte.errors import UserError
from lte.modeling.batching import PadCollator
from lte.prompts import IGNORE_INDEX

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted((REPO / "configs" / "align").glob("*.yaml"))
DS_CONFIGS = sorted((REPO / "configs" / "deepspeed").glob("*.json"))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """A tiny model folder and a 64-example corpus tokenized with its tokenizer."""
    from lte.align.smoke import write_smoke_corpus, write_smoke_model
    from lte.modeling.load import load_tokenizer

    root = tmp_path_factory.mktemp("smoke")
    model = write_smoke_model(root / "model", hidden_size=32, layers=1, vocab_size=300)
    tok = load_tokenizer(str(model))
    corpus = write_smoke_corpus(root / "corpus", tok, n=64, shards=2)
    return model, corpus, tok


# ------------------------------------------------------------------ configs


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_align_preset_loads_and_names_a_shipped_deepspeed_config(path):
    cfg = load_config(AlignConfig, path)
    assert path.read_text().startswith("# "), "a preset starts with the command that runs it"
    if cfg.deepspeed:
        assert (REPO / cfg.deepspeed).is_file()
        load_deepspeed_config(cfg.deepspeed)


def test_paper_presets_follow_the_recipe():
    for name, beta2 in (("llama2-7b-chat", 0.999), ("qwen-7b-chat", 0.95)):
        cfg = load_config(AlignConfig, REPO / "configs" / "align" / f"{name}.yaml")
        assert (cfg.epochs, cfg.lr, cfg.global_batch_size, cfg.warmup_ratio) == (3, 2e-5, 128, 0.03)
        assert (cfg.lr_scheduler, cfg.max_length, cfg.weight_decay) == ("cosine", 2048, 0.0)
        assert cfg.gradient_checkpointing and cfg.precision == "bf16"
        assert cfg.adam_beta2 == beta2
        assert zero_stage(load_deepspeed_config(cfg.deepspeed)) == 3


@pytest.mark.parametrize("path", DS_CONFIGS, ids=lambda p: p.name)
def test_deepspeed_configs(path):
    cfg = load_deepspeed_config(str(path))
    zero = cfg["zero_optimization"]
    if zero["stage"] == 3:
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    # batch sizes are left to the Trainer, which derives them from the YAML config
    assert cfg["train_batch_size"] == "auto" and cfg["gradient_accumulation_steps"] == "auto"
    if path.name == "zero3_offload.json":
        assert zero["offload_param"]["device"] == zero["offload_optimizer"]["device"] == "cpu"


def test_config_errors_are_collected():
    with pytest.raises(UserError) as e:
        load_config(AlignConfig, None, ["init=warm", "precision=fp8", "lr=0", "nope=1"])
    msg = str(e.value)
    for part in ("init='warm'", "precision='fp8'", "align.lr=0", "unknown key 'nope'"):
        assert part in msg


def test_missing_deepspeed_config_lists_the_shipped_ones():
    with pytest.raises(UserError, match="zero3.json"):
        load_deepspeed_config("configs/deepspeed/zero9.json")


# ------------------------------------------------------------------ batch arithmetic


@pytest.mark.parametrize("world,accum", [(1, 32), (2, 16), (8, 4), (32, 1)])
def test_global_batch_is_constant_across_world_sizes(world, accum):
    assert grad_accumulation(128, 4, world) == accum
    assert accum * 4 * world == 128


def test_global_batch_that_does_not_divide_is_an_error_listing_fits():
    with pytest.raises(UserError, match=r"micro batch sizes that fit 3 processes: 1, 2, 4"):
        grad_accumulation(12, 5, 3)


# ------------------------------------------------------------------ data


def test_collator_pads_right_and_masks_padding_out_of_the_loss():
    batch = PadCollator(pad_token_id=0)([
        {"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]},
        {"input_ids": [8], "labels": [8]},
    ])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert PadCollator(0, pad_to_multiple_of=8)(
        [{"input_ids": [1], "labels": [1]}])["input_ids"].shape == (1, 8)


def test_corpus_loads_in_shard_order_with_answer_only_labels(smoke):
    _, folder, tok = smoke
    corpus = load_corpus(folder, tok, max_length=512)
    assert len(corpus.examples) == 64 and corpus.truncated == corpus.dropped == 0
    ex = corpus.examples[0]
    answer = [t for t in ex["labels"] if t != IGNORE_INDEX]
    assert answer and answer[-1] == tok.eos_token_id
    assert ex["labels"][: len(ex["labels"]) - len(answer)] == [IGNORE_INDEX] * (
        len(ex["labels"]) - len(answer))
    import hashlib

    assert corpus.manifest_sha256 == hashlib.sha256(
        (folder / "manifest.json").read_bytes()).hexdigest()


def test_corpus_cut_to_max_length_drops_examples_without_answer_tokens(smoke):
    _, folder, tok = smoke
    corpus = load_corpus(folder, tok, max_length=30)
    assert corpus.dropped > 0
    assert all(len(e["input_ids"]) <= 30 for e in corpus.examples)
    assert all(any(t != IGNORE_INDEX for t in e["labels"]) for e in corpus.examples)


def test_untokenized_shards_are_tokenized_like_the_corpus_stage(smoke, tmp_path):
    import pyarrow.parquet as pq

    _, folder, tok = smoke
    for f in folder.glob("*.parquet"):
        pq.write_table(pq.read_table(f).drop(["input_ids", "labels"]), tmp_path / f.name)
    (tmp_path / "manifest.json").write_bytes((folder / "manifest.json").read_bytes())
    assert load_corpus(tmp_path, tok, 512).examples == load_corpus(folder, tok, 512).examples


def test_corpus_errors_name_the_file(smoke, tmp_path):
    _, folder, tok = smoke
    with pytest.raises(UserError, match="corpus folder not found"):
        load_corpus(tmp_path / "missing", tok, 512)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(UserError, match=r"no \*\.parquet shards"):
        load_corpus(tmp_path, tok, 512)
    small_vocab = type("Tok", (), {"__len__": lambda self: 10})()
    with pytest.raises(UserError, match="outside the tokenizer's vocabulary"):
        load_corpus(folder, small_vocab, 512)


# ------------------------------------------------------------------ checkpoints, tracking


def test_newest_checkpoint_skips_one_killed_while_being_written(tmp_path):
    for step, complete in ((5, True), (10, True), (15, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert [p.name for p in checkpoints(tmp_path)] == ["checkpoint-5", "checkpoint-10"]
    assert newest_checkpoint(tmp_path).name == "checkpoint-10"
    assert newest_checkpoint(tmp_path / "nothing") is None


def test_throughput_and_mfu():
    t = Throughput(flops_per_token=6e9, peak_tflops=1000.0, world_size=2)
    assert t.update(0, 10.0) == {}
    out = t.update(20_000, 12.0)
    assert out["tokens_per_s"] == 10_000
    assert out["mfu"] == pytest.approx(10_000 * 6e9 / 2e15, rel=1e-3)
    assert "mfu" not in Throughput(6e9, None, 1).update(0, 0) | Throughput(6e9, None, 1).update(
        1, 1)


def test_wandb_is_off_without_a_project_and_offline_without_a_key(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for var in ("WANDB_PROJECT", "WANDB_TAGS", "WANDB_NAME"):
        monkeypatch.delenv(var, raising=False)
    assert setup_wandb(AlignConfig(), "run") == []
    cfg = load_config(AlignConfig, None, ["wandb.project=lte", "wandb.tags=[a,b]"])
    assert setup_wandb(cfg, "run-1") == ["wandb"]
    import os

    assert os.environ["WANDB_MODE"] == "offline"
    assert (os.environ["WANDB_PROJECT"], os.environ["WANDB_TAGS"]) == ("lte", "a,b")


# ------------------------------------------------------------------ CLI and a whole run


def _lte(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "lte", "align", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    r = _lte("--config", str(REPO / "configs/align/tiny.yaml"), f"corpus={tmp_path}/none",
             "lr=fast")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "lr='fast' should be float" in r.stderr
    assert "Traceback" not in r.stderr


def test_single_process_run_without_deepspeed(smoke, tmp_path):
    """The demo's path: run_alignment in this process; final/ reloads; loss falls; meta says how."""
    import torch
    from transformers import AutoModelForCausalLM

    from lte.align.recipe import run_alignment
    from lte.layout import read_meta

    model, corpus, tok = smoke
    cfg = load_config(AlignConfig, REPO / "configs/align/tiny.yaml", [
        f"corpus={corpus}", f"model.name_or_path={model}", "deepspeed=null", f"out={tmp_path}",
        "max_steps=6", "save_steps=3", "logging_steps=1", "global_batch_size=8",
        "micro_batch_size=4", "lr=3e-3", "warmup_ratio=0.0", "lr_scheduler=constant"])
    final = run_alignment(cfg)
    meta = read_meta(final)
    losses = [h["loss"] for h in meta["loss_history"]]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert meta["throughput"]["tokens_per_s_median"] > 0 and meta["throughput"]["train_runtime_s"]
    assert not (tmp_path / "trainer_state.json").exists()  # HF's file stays in checkpoint-N/
    assert meta["global_step"] == 6 and meta["world_size"] == 1 and meta["zero_stage"] == 0
    assert meta["gradient_accumulation"] == 2 and meta["verify_save"]["ok"]
    assert meta["config"]["corpus"] == str(corpus)
    assert (tmp_path / "config.yaml").is_file() and not (final / "training_args.bin").exists()
    reloaded = AutoModelForCausalLM.from_pretrained(final)
    assert (final / "model.safetensors").is_file() and (final / "tokenizer.json").is_file()
    ids = torch.tensor([load_corpus(corpus, tok, 512).examples[0]["input_ids"]])
    assert torch.isfinite(reloaded(input_ids=ids).logits).all()
    # a second run into the same folder must not overwrite it silently
    with pytest.raises(UserError, match="pass --resume"):
        run_alignment(cfg)


def test_scratch_init_takes_architecture_overrides(smoke):
    from lte.align.recipe import _build_model

    model_dir, _, tok = smoke
    base = [f"model.name_or_path={model_dir}", "init=scratch"]
    cfg = load_config(AlignConfig, None, [*base, "architecture.hidden_size=48",
                                          "architecture.num_attention_heads=3"])
    model = _build_model(cfg, tok)
    assert (model.config.hidden_size, model.config.head_dim) == (48, 16)
    assert model.get_input_embeddings().weight.shape == (len(tok), 48)
    with pytest.raises(UserError, match="architecture.hidden_sise"):
        _build_model(load_config(AlignConfig, None, [*base, "architecture.hidden_sise=8"]), tok)
    with pytest.raises(UserError, match="only applies with init: scratch"):
        load_config(AlignConfig, None, ["architecture.hidden_size=8"])


def test_cli_takes_flags_and_overrides_in_any_order():
    from lte.align.cli import _split
    from lte.cli import build_parser

    def split(*argv):
        args = build_parser().parse_args(["align", *argv])
        return _split(args, list(args.overrides), "lte align")

    ns = split("--config", "c.yaml", "a=1", "--deepspeed", "z.json", "b.c=2", "--resume")
    assert (ns.config, ns.deepspeed, ns.out, ns.resume, ns.overrides) == (
        "c.yaml", "z.json", None, True, ["a=1", "b.c=2"])
    ns = split("--config", "c.yaml", "--out", "o", "a=1")
    assert (ns.out, ns.resume, ns.overrides) == ("o", False, ["a=1"])
    with pytest.raises(UserError, match="unrecognized arguments: --bogus"):
        split("--config", "c.yaml", "a=1", "--bogus")
    with pytest.raises(UserError, match="lte align needs --config"):
        split("a=1")


def test_smoke_data_and_init_model_verbs(tmp_path):
    """The verbs tools/gpu_align_check.sh and tools/study_tiny.sh call (no Python heredocs)."""
    import torch
    from transformers import AutoModelForCausalLM

    from lte.align.data import load_corpus
    from lte.align.recipe import _build_model
    from lte.cli import main
    from lte.modeling.load import load_tokenizer

    work = tmp_path / "work"
    assert main(["align", "smoke-data", "--out", str(work), "--examples", "12", "--shards", "3",
                 "--vocab-size", "300"]) == 0
    tok = load_tokenizer(str(work / "model"))
    assert len(tok) >= 300 and len(load_corpus(work / "corpus", tok, 256).examples) == 12
    overrides = [f"corpus={work / 'corpus'}", f"model.name_or_path={work / 'model'}",
                 "deepspeed=null"]
    assert main(["align", "init-model", "--config", str(REPO / "configs/align/tiny.yaml"),
                 "--out", str(tmp_path / "base"), *overrides]) == 0
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    cfg = load_config(AlignConfig, REPO / "configs/align/tiny.yaml", overrides)
    fresh = _build_model(cfg, tok)  # the seeded initialisation run_alignment starts from
    for a, b in zip(saved.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert main(["align", "init-model", "--config", str(REPO / "configs/align/tiny.yaml"),
                 *overrides]) == 2  # no --out
