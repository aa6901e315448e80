"""Resume points and the final checkpoint folder.

The Trainer writes `checkpoint-N/` every `save_steps` (DeepSpeed shards, optimizer, RNG states,
`trainer_state.json` last). A job killed while writing one leaves it without `trainer_state.json`,
so the newest *complete* checkpoint is the resume point. The final folder is a plain
`save_pretrained` one that loads without DeepSpeed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import lte

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(out: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = []
    for p in out.iterdir():
        m = _CKPT.match(p.name)
        if m and p.is_dir() and (p / "trainer_state.json").is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def newest_checkpoint(out: str | Path) -> Path | None:
    found = checkpoints(out)
    return found[-1] if found else None


def code_version() -> str:
    """Package version plus the git commit (and +dirty) when running from a checkout."""
    root = Path(lte.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "lte"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    version = lte.__version__ if hasattr(lte, "__version__") else "unknown"
    return f"{version}+g{commit}{'.dirty' if dirty else ''}" if commit else version
