"""Two "nodes" for real on one machine: slurm/align.sh under a fake srun/scontrol starts two real
launch/align.sh (NODE_RANK 0 and 1, one training process each) that rendezvous on loopback.
ZeRO-3 partitions the model across both; SIGUSR1 checkpoints both at the same step and requeues;
the requeued job resumes both from that step; the final checkpoint is written once and loads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from slurm_support import write_fake_slurm

from lte.align.checkpoint import newest_checkpoint
from lte.align.distributed import free_port
from lte.layout import read_meta

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
JOB = "7001"


@pytest.fixture
def two_nodes(tmp_path):
    """srun runs each task once per node in the background (SLURM_NODEID set), as Slurm would
    on two hosts; scontrol names two loopback hosts and records a requeue."""
    from lte.align.smoke import write_smoke_corpus, write_smoke_model
    from lte.modeling.load import load_tokenizer

    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.log"
    write_fake_slurm(bin_dir, ("127.0.0.1", "127.0.0.1"))
    model = write_smoke_model(tmp_path / "model", hidden_size=32, layers=2, vocab_size=300)
    corpus = write_smoke_corpus(tmp_path / "corpus", load_tokenizer(str(model)), n=128)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls),
           "SLURM_JOB_ID": JOB, "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "node-[1-2]",
           "SLURM_GPUS_ON_NODE": "1", "SLURM_SUBMIT_DIR": str(REPO), "OUT": str(tmp_path / "run"),
           "MASTER_PORT": str(free_port()), "PREEMPT_GRACE_S": "300", "WANDB_MODE": "offline"}
    for var in ("MASTER_ADDR", "RUNS", "REPO", "NPROC", "NNODES", "NODE_RANK"):
        env.pop(var, None)
    args = [f"corpus={corpus}", f"model.name_or_path={model}", "logging_steps=1",
            "global_batch_size=8", "micro_batch_size=4", "lr_scheduler=constant",
            "warmup_ratio=0.0", "lr=3e-3"]
    return tmp_path, env, args, calls


def _job(env, args, log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen(["bash", str(REPO / "slurm" / "align.sh"), "configs/align/tiny.yaml",
                                 *args], cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the job's own session: the launchers and workers
        raise


def _losses(log: Path) -> int:
    return log.read_text(errors="replace").count("{'loss': ")


def test_two_nodes_partition_preempt_requeue_and_resume_at_the_same_step(two_nodes):
    root, env, args, calls = two_nodes
    out, log = root / "run", root / "job.log"
    # 1. the job runs on both nodes until SIGUSR1 (Slurm's time-limit warning)
    proc = _job(env, [*args, "max_steps=500", "save_steps=1000", "verify_save=false"], log)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None and _losses(log) < 2:
        time.sleep(0.2)
    assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
    proc.send_signal(signal.SIGUSR1)
    assert _wait(proc, 300) == 0, log.read_text(errors="replace")[-4000:]
    text = log.read_text(errors="replace")
    assert "pre-emption signal: saving checkpoint-" in text
    assert f"scontrol requeue {JOB}" in calls.read_text().splitlines()
    ckpt = newest_checkpoint(out)
    step = int(ckpt.name.split("-")[1])
    assert 2 <= step < 500 and not (out / "final").exists()
    # each rank saved its own ZeRO-3 partition of the same step
    shards = sorted(p.name for p in (ckpt / f"global_step{step}").glob("*model_states.pt"))
    assert shards == ["zero_pp_rank_0_mp_rank_00_model_states.pt",
                      "zero_pp_rank_1_mp_rank_00_model_states.pt"]
    for r in (0, 1):  # ZeRO-3 spread the model over both nodes: each holds half
        part = json.loads((out / "ranks" / f"rank{r}.json").read_text())
        assert part["world_size"] == 2 and part["partitioned"] and part["start_step"] == 0
        assert part["local_numel"] == pytest.approx(part["full_numel"] / 2, rel=0.02)

    # 2. the requeued job (same job id, so the same folder; slurm/align.sh passes --resume)
    first = len(text)
    proc = _job(env, [*args, f"max_steps={step + 2}", "save_steps=1000", "verify_save=true"], log)
    assert _wait(proc, 600) == 0, log.read_text(errors="replace")[-4000:]
    text = log.read_text(errors="replace")[first:]
    for r in (0, 1):  # both nodes continued from the step they checkpointed
        assert json.loads((out / "ranks" / f"rank{r}.json").read_text())["start_step"] == step
    assert text.count("{'loss': ") == 2, "the resumed job trains exactly the remaining steps"
    assert text.count("final checkpoint: ") == 1  # written once, by global rank 0
    meta = read_meta(out / "final")
    assert meta["resumed_from"] == str(ckpt) and meta["global_step"] == step + 2
    assert (meta["world_size"], meta["zero_stage"]) == (2, 3) and meta["verify_save"]["ok"]
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out / "final").num_parameters() > 0
