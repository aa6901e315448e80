"""`launch/align.sh` with 2 CPU processes over gloo: ZeRO-3 (partitioned, loss falls, killed and
resumed at the right step with the same data order, saved model = trained engine), and the
ZeRO-2 and offload configs through both launchers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from serve_support import _kill, _tree

from lte.align.checkpoint import newest_checkpoint
from lte.layout import read_meta

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "align.sh"
LOSS_LINE = re.compile(r"\{'loss': '([0-9.e+-]+)'")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from lte.align.smoke import write_smoke_corpus, write_smoke_model
    from lte.modeling.load import load_tokenizer

    root = tmp_path_factory.mktemp("align-dist")
    model = write_smoke_model(root / "model", hidden_size=64, layers=2, vocab_size=512)
    corpus = write_smoke_corpus(root / "corpus", load_tokenizer(str(model)), n=256)
    return model, corpus


def _launch(smoke, out: Path, *extra: str, launcher: str = "torchrun") -> subprocess.Popen:
    model, corpus = smoke
    env = {**os.environ, "LAUNCHER": launcher, "NPROC": "2", "WANDB_MODE": "offline"}
    log = open(out.parent / f"{out.name}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [str(LAUNCH), "configs/align/tiny.yaml", "--out", str(out), f"corpus={corpus}",
         f"model.name_or_path={model}", "logging_steps=1", *extra],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _finish(proc: subprocess.Popen, out: Path, timeout: float = 900) -> str:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(_tree(proc))  # torchrun puts workers in sessions of their own
        raise
    text = (out.parent / f"{out.name}.log").read_text(errors="replace")
    assert rc == 0, text[-4000:]
    return text


def _logged_losses(text: str) -> list[float]:
    return [float(x) for x in LOSS_LINE.findall(text)]


def test_zero3_partitions_resumes_after_a_kill_and_saves_the_trained_weights(smoke, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    common = ("max_steps=6", "save_steps=2", "lr_scheduler=constant", "warmup_ratio=0.0",
              "lr=3e-3")
    # 1. start, and SIGKILL the whole launcher group once a checkpoint exists and a later step
    #    has been logged: the kill lands mid-way through training.
    proc = _launch(smoke, out, *common)
    log_path = tmp_path / "run.log"
    killed_at = None
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None:
        ckpt = newest_checkpoint(out)
        logged = _logged_losses(log_path.read_text(errors="replace"))
        if ckpt is not None and len(logged) > int(ckpt.name.split("-")[1]):
            _kill(_tree(proc))
            killed_at = int(ckpt.name.split("-")[1])
            break
        time.sleep(0.1)
    if killed_at is None:
        _kill(_tree(proc))
    proc.wait(timeout=60)
    assert killed_at is not None and killed_at < 6, "the run ended before it could be killed"
    first = _logged_losses(log_path.read_text(errors="replace"))
    resume_from = newest_checkpoint(out)  # a later one may have completed while dying

    # 2. the same command with --resume continues from the newest complete checkpoint
    text = _finish(_launch(smoke, out, *common, "--resume"), out)
    meta = read_meta(out / "final")
    step = int(resume_from.name.split("-")[1])
    assert meta["resumed_from"] == str(resume_from)
    resumed = _logged_losses(text)[len(first):]  # both runs append to the same log
    assert len(resumed) == 6 - step, "the resumed run trains exactly the remaining steps"
    # same data order and state: the steps logged both before the kill and after the resume agree
    overlap = first[step:]
    assert overlap, "no step logged after the checkpoint before the kill"
    assert resumed[: len(overlap)] == pytest.approx(overlap, abs=2e-3)

    history = meta["loss_history"]
    assert [h["step"] for h in history] == list(range(1, 7)) and meta["global_step"] == 6
    losses = [h["loss"] for h in history]
    assert sum(losses[-2:]) / 2 < losses[0] - 0.3, losses
    assert "tokens_per_s" in history[-1]

    # ZeRO-3 really partitioned the parameters: each rank holds half of every tensor
    for r in (0, 1):
        part = json.loads((out / "ranks" / f"rank{r}.json").read_text())
        assert part["partitioned"] and part["world_size"] == 2
        assert part["local_numel"] == pytest.approx(part["full_numel"] / 2, rel=0.01)
    assert (meta["zero_stage"], meta["world_size"], meta["gradient_accumulation"]) == (3, 2, 2)

    # the saved folder loads without DeepSpeed and gives the trained engine's logits
    probe = load_file(out / "verify_save.safetensors")
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    with torch.no_grad():
        logits = model(input_ids=probe["input_ids"]).logits
    torch.testing.assert_close(logits, probe["logits"], rtol=0, atol=1e-4)
    assert meta["verify_save"]["ok"] and (out / "final" / "tokenizer.json").is_file()


@pytest.mark.parametrize("name,launcher", [("zero2", "deepspeed"), ("zero3_offload", "torchrun")])
def test_zero2_and_offload_configs_run(smoke, tmp_path, name, launcher):
    config = json.loads((REPO / "configs" / "deepspeed" / f"{name}.json").read_text())
    if name == "zero3_offload":
        # DeepSpeed's CPU Adam is a C++ op that DS_BUILD_OPS=0 leaves unbuilt; torch's AdamW is
        # the one change from the shipped file (and nothing to pin memory for without CUDA).
        config["optimizer"]["params"]["torch_adam"] = True
        config["zero_force_ds_cpu_optimizer"] = False
        for part in ("offload_param", "offload_optimizer"):
            config["zero_optimization"][part]["pin_memory"] = False
    ds = tmp_path / f"{name}.json"
    ds.write_text(json.dumps(config))
    out = tmp_path / "run"
    _finish(_launch(smoke, out, "--deepspeed", str(ds), "max_steps=2", "verify_save=false",
                    launcher=launcher), out)
    meta = read_meta(out / "final")
    assert meta["zero_stage"] == config["zero_optimization"]["stage"] and meta["world_size"] == 2
    assert (out / "final" / "model.safetensors").is_file()
    part = json.loads((out / "ranks" / "rank1.json").read_text())
    assert part["partitioned"] == (name == "zero3_offload")


def test_single_plain_process_runs_the_deepspeed_preset(smoke, tmp_path):
    """The demo calls run_alignment in its own process, no launcher: DeepSpeed still runs."""
    import torch.distributed as tdist

    from lte.align.recipe import run_alignment
    from lte.config import AlignConfig, load_config

    model, corpus = smoke
    cfg = load_config(AlignConfig, REPO / "configs/align/tiny.yaml", [
        f"corpus={corpus}", f"model.name_or_path={model}", f"out={tmp_path}", "max_steps=2",
        "global_batch_size=8", "micro_batch_size=4"])
    assert cfg.deepspeed
    final = run_alignment(cfg)
    meta = read_meta(final)
    assert (meta["zero_stage"], meta["world_size"], meta["global_step"]) == (3, 1, 2)
    assert meta["verify_save"]["ok"]
    assert not tdist.is_initialized() and "RANK" not in os.environ  # left as it found them


def test_preemption_signal_saves_a_checkpoint_at_the_current_step_and_resume_continues(
        smoke, tmp_path):
    """slurm/align.sh (without Slurm) on SIGUSR1: the workers save checkpoint-N mid-way between
    save_steps and exit cleanly; --resume continues at step N."""
    model, corpus = smoke
    out = tmp_path / "run"
    log_path = tmp_path / "run.log"
    common = (f"corpus={corpus}", f"model.name_or_path={model}", "logging_steps=1",
              "lr_scheduler=constant", "warmup_ratio=0.0", "verify_save=false")
    env = {**os.environ, "OUT": str(out), "WANDB_MODE": "offline", "PREEMPT_GRACE_S": "300"}
    for var in ("SLURM_JOB_ID", "SLURM_NNODES", "SLURM_JOB_NODELIST", "NPROC"):
        env.pop(var, None)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            ["bash", str(REPO / "slurm" / "align.sh"), "configs/align/tiny.yaml", *common,
             "max_steps=500", "save_steps=1000"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if len(_logged_losses(log_path.read_text(errors="replace"))) >= 3:
            break
        time.sleep(0.1)
    assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
    proc.send_signal(signal.SIGUSR1)
    try:
        rc = proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        _kill(_tree(proc))
        raise
    text = log_path.read_text(errors="replace")
    assert rc == 0, text[-4000:]
    assert "pre-emption signal: saving checkpoint-" in text
    ckpt = newest_checkpoint(out)
    step = int(ckpt.name.split("-")[1])
    assert 3 <= step < 500 and not (out / "final").exists()
    assert len(_logged_losses(text)) == step, "training stopped at the step it saved"

    text = _finish(_launch(smoke, out, *common, f"max_steps={step + 2}", "--resume"), out)
    meta = read_meta(out / "final")
    assert meta["resumed_from"] == str(ckpt) and meta["global_step"] == step + 2
