"""Fake `srun` and `scontrol` for running slurm/*.sh without Slurm: every call is logged to
$CALLS, srun starts its task once per node (SLURM_NODEID set) and passes a TERM on to them."""

from __future__ import annotations

from pathlib import Path


def write_script(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def write_fake_slurm(bin_dir: Path, hostnames: tuple[str, ...]) -> None:
    write_script(bin_dir / "srun",
                 '#!/usr/bin/env bash\n'
                 'echo "srun $*" >> "$CALLS"\n'
                 'trap \'kill $(jobs -p) 2>/dev/null\' TERM\n'
                 'while [[ "$1" == --* ]]; do shift; done\n'
                 'for ((n = 0; n < SLURM_NNODES; n++)); do SLURM_NODEID=$n "$@" & done\n'
                 'wait\n')
    names = "\\n".join(hostnames)
    write_script(bin_dir / "scontrol",
                 '#!/usr/bin/env bash\n'
                 'echo "scontrol $*" >> "$CALLS"\n'
                 f'if [[ "$1 $2" == "show hostnames" ]]; then printf "{names}\\n"; fi\n')
