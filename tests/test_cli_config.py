"""One CLI convention: `--config`, positional key=value overrides and flags build one config."""

from __future__ import annotations

import argparse

import pytest

from lte.cli import build_parser, main
from lte.config import EvalConfig, MemoryConfig
from lte.config.cli import stage_config
from lte.errors import UserError

# Every command that takes a config, with the dataclass its overrides fill.
COMMANDS = [(["corpus", "build"], "CorpusConfig"), (["align"], "AlignConfig"),
            (["memory", "build"], "MemoryConfig"), (["memory", "calibrate"], "MemoryConfig"),
            (["eval"], "EvalConfig"), (["serve"], "ServeConfig"),
            (["bench", "serve"], "ServeConfig"), (["demo"], "DemoConfig")]


@pytest.mark.parametrize("command, cls", COMMANDS, ids=lambda c: " ".join(c) if isinstance(c, list) else c)
def test_help_lists_every_key_with_its_doc(command, cls, capsys):
    with pytest.raises(SystemExit) as e:
        main([*command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"config keys ({cls})" in out and "key=value" in out
    assert "--set" not in out


def test_help_shows_field_docstrings(capsys):
    with pytest.raises(SystemExit):
        main(["memory", "build", "--help"])
    out = capsys.readouterr().out
    assert "threshold = None  relevance gate: drop hits below this similarity" in out
    assert "embedder.batch_size = 128  sentences per encode call" in out


def _eval_args(*argv) -> argparse.Namespace:
    return build_parser().parse_args(["eval", *argv])


def test_flags_win_over_overrides_and_keep_their_types(tmp_path):
    preset = tmp_path / "e.yaml"
    preset.write_text("out: from-yaml\nsizes: [7]\nseed: 3\n")
    args = _eval_args("--config", str(preset), "--data", "true", "1.5", "--out", "from-flag",
                      "out=from-override", "seed=4", "--sizes", "10,20")
    cfg = stage_config(args, EvalConfig, {"data": "data", "out": "out", "sizes": "sizes"})
    assert cfg.out == "from-flag" and cfg.seed == 4 and cfg.sizes == [10, 20]
    assert cfg.data == ["true", "1.5"]  # file names from a flag are not YAML-parsed


def test_overrides_after_a_list_flag_are_taken_back():
    args = _eval_args("--data", "a.json", "b.json", "seed=5", "memory.top_k=2")
    cfg = stage_config(args, EvalConfig, {"data": "data"})
    assert cfg.data == ["a.json", "b.json"] and cfg.seed == 5 and cfg.memory.top_k == 2
    with pytest.raises(UserError, match="--data got only key=value overrides"):
        stage_config(_eval_args("--data", "seed=5"), EvalConfig, {"data": "data"})


def test_flag_and_override_problems_come_in_one_line():
    args = build_parser().parse_args(["memory", "build", "--edits", "e.json", "--out", "o",
                                      "--index", "IVF,Flat", "top_k=0", "bogus=1"])
    with pytest.raises(UserError) as e:
        stage_config(args, MemoryConfig, {"index": "index"})
    msg = str(e.value)
    assert "\n" not in msg
    for problem in ("memory.index: index 'IVF,Flat' is not supported", "memory.top_k=0",
                    "unknown key 'bogus'"):
        assert problem in msg


@pytest.mark.parametrize("argv, problem", [
    (["eval", "--methods", "lte,magic", "--data", "x.json"], "eval.methods='magic' is not one of"),
    (["eval", "--protocol", "stream", "--data", "x.json"], "eval.protocols='stream'"),
    (["eval", "memory.threshold=.nan", "--data", "x.json"], "should be a finite number"),
    (["eval", "tags=[a, b", "--data", "x.json"], "override 'tags=[a, b': not valid YAML"),
    (["eval", "stray", "--data", "x.json"], "unrecognized arguments: stray"),
    (["eval", "report"], "lte eval report DIR"),
    (["align", "init-model", "--out", "x"], "lte align init-model needs --config"),
])
def test_bad_command_lines_are_one_line_and_exit_2(argv, problem, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_config_files_exit_2(tmp_path, capsys):
    deep = tmp_path / "deep.yaml"
    deep.write_text("memory: " + "{a: " * 100_000)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("out: caf\u00e9\n".encode("latin-1"))
    for path, problem in ((deep, "nested deeper than 32 levels"), (latin, "not UTF-8 text")):
        assert main(["eval", "--config", str(path), "--data", "x.json"]) == 2
        err = capsys.readouterr().err
        assert f"{path}: {problem}" in err and err.count("\n") == 1
