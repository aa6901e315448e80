"""Every shipped YAML preset loads into its stage's dataclass without a problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lte.config import load_config, stage_config_class

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# recipe/: the tiny checkpoint's recipe, loaded by its tool (tests/test_modeling.py)
YAMLS = sorted(p for p in CONFIGS.glob("*/*.yaml") if p.parent.name != "recipe")


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_preset_loads(path: Path):
    cls = stage_config_class(path.parent.name)
    cfg = load_config(cls, path)
    assert isinstance(cfg, cls)
    if path.parent.name == "eval":  # method and protocol names are the eval registry's
        from lte.eval.registry import check_names

        check_names(cfg)


def test_presets_start_with_the_command_that_runs_them():
    for path in YAMLS:
        first = path.read_text().splitlines()[0]
        assert first.startswith("#") and ("lte " in first or "launch/" in first), path


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("deepspeed/*.json")), ids=lambda p: p.name)
def test_deepspeed_configs_are_json(path: Path):
    assert "zero_optimization" in json.loads(path.read_text())
