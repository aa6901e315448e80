"""Bad input to `lte memory` and `lte eval report`: one line naming the file, record or field, and
exit code 2; a build that fails leaves no folder behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lte.cli import main

HASHING = ["embedder.name=hashing", "embedder.hashing_dim=128"]


def edit_rows(n: int) -> list[dict]:
    return [{"case_id": i, "subject": f"Person{i}", "prompt": f"Person{i} works in the field of",
             "target_new": f"field{i}", "ground_truth": "physics"} for i in range(n)]


def write_edits(path: Path, n: int = 30) -> Path:
    path.write_text(json.dumps(edit_rows(n)))
    return path


def one_line_exit_2(capsys, argv: list[str]) -> str:
    assert main(argv) == 2, argv
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lte: error: "), captured.err
    return err[0]


@pytest.fixture
def memory(tmp_path, capsys) -> Path:
    out = tmp_path / "mem"
    assert main(["memory", "build", "--edits", str(write_edits(tmp_path / "e.json")),
                 "--out", str(out), *HASHING]) == 0
    capsys.readouterr()
    return out


def test_unreadable_edit_files(tmp_path, capsys):
    line = one_line_exit_2(capsys, ["memory", "build", "--edits", str(tmp_path / "none.json"),
                                    "--out", str(tmp_path / "m"), *HASHING])
    assert "none.json" in line
    (tmp_path / "dir.json").mkdir()
    line = one_line_exit_2(capsys, ["memory", "build", "--edits", str(tmp_path / "dir.json"),
                                    "--out", str(tmp_path / "m"), *HASHING])
    assert "dir.json" in line
    (tmp_path / "latin1.json").write_bytes(b'[{"prompt": "caf\xe9"}]')
    one_line_exit_2(capsys, ["memory", "build", "--edits", str(tmp_path / "latin1.json"),
                             "--out", str(tmp_path / "m"), *HASHING])
    assert not (tmp_path / "m").exists()


def test_out_that_is_a_file_or_cannot_be_created(tmp_path, capsys):
    edits = write_edits(tmp_path / "e.json")
    (tmp_path / "afile").write_text("x")
    line = one_line_exit_2(capsys, ["memory", "build", "--edits", str(edits), "--out",
                                    str(tmp_path / "afile"), *HASHING])
    assert "is a file" in line
    one_line_exit_2(capsys, ["memory", "build", "--edits", str(edits), "--out",
                             str(tmp_path / "afile" / "sub"), *HASHING])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    line = one_line_exit_2(capsys, ["memory", "build", "--edits", str(edits), "--out",
                                    str(tmp_path / "full"), *HASHING])
    assert "holds other files" in line and (tmp_path / "full" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("spec", ["HNSW0", "IVFauto,PQ0", "IVFauto,PQ7", "IVF0,Flat",
                                  "IVF16,PQ8x0", "HNSW", "Flat,IVF", "IVFauto,PQ0x4fs,RFlat",
                                  "IVFauto,PQ7x4fs,RFlat", "IVF16,PQ8x4fs", "IVF16,PQ8x8fs,RFlat"])
def test_bad_index_specs_fail_before_the_folder_exists(tmp_path, capsys, spec):
    line = one_line_exit_2(capsys, ["memory", "build", "--edits",
                                    str(write_edits(tmp_path / "e.json")), "--out",
                                    str(tmp_path / "m"), "--index", spec, *HASHING])
    assert spec in line
    assert not (tmp_path / "m").exists()


def test_missing_embedder_fails_before_the_folder_exists(tmp_path, capsys):
    line = one_line_exit_2(capsys, ["memory", "build", "--edits",
                                    str(write_edits(tmp_path / "e.json")), "--out",
                                    str(tmp_path / "m"),
                                    f"embedder.name={tmp_path / 'no-such-model'}"])
    assert "no-such-model" in line
    assert not (tmp_path / "m").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["e.json"]  # no temporary folder left


def test_lone_surrogate_fails_the_whole_build_and_a_rerun_works(tmp_path, capsys):
    rows = edit_rows(2002)
    text = json.dumps(rows)
    # JSON may spell a lone surrogate; it is no text SQLite (UTF-8) can store.
    text = text.replace('"Person1500 works in the field of"', '"Person1500 works \\ud800 in"')
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    line = one_line_exit_2(capsys, ["memory", "build", "--edits", str(bad), "--out",
                                    str(tmp_path / "m"), *HASHING])
    assert "bad.json" in line and "record 1500" in line and "prompt" in line
    assert not (tmp_path / "m").exists()
    write_edits(bad, 2002)
    assert main(["memory", "build", "--edits", str(bad), "--out", str(tmp_path / "m"),
                 *HASHING]) == 0
    assert "stored 2002 edits" in capsys.readouterr().out


def test_damaged_log_is_one_line_for_every_command(memory, capsys):
    (memory / "edits.sqlite").write_bytes(b"this is not a database" * 200)
    (memory / "edits.sqlite-wal").unlink(missing_ok=True)
    for argv in (["memory", "stats", str(memory)],
                 ["memory", "search", str(memory), "Person3 works in the field of"],
                 ["memory", "delete", str(memory), "1"]):
        line = one_line_exit_2(capsys, argv)
        assert "edits.sqlite" in line and "damaged" in line


def test_ids_and_k_out_of_range(memory, capsys):
    line = one_line_exit_2(capsys, ["memory", "delete", str(memory), str(2**63)])
    assert str(2**63) in line
    one_line_exit_2(capsys, ["memory", "delete", str(memory), "seven"])
    one_line_exit_2(capsys, ["memory", "delete", str(memory), "0"])
    # -k is bounded by the memory's size: no allocation of 2^31 results per query.
    assert main(["memory", "search", str(memory), "Person3 works in the field of", "-k",
                 "2147483648", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    assert len(hits) == 30 and hits[0]["descriptor"].startswith("Person3 ")
    for bad in ("nan", "inf", "-inf"):
        line = one_line_exit_2(capsys, ["memory", "search", str(memory), "q", f"--threshold={bad}"])
        assert "finite" in line


def test_calibrate_min_keep_outside_0_1(tmp_path, capsys):
    edits = write_edits(tmp_path / "e.json")
    for bad in ("-1", "0", "1.5", "nan"):
        line = one_line_exit_2(capsys, ["memory", "calibrate", "--dev", str(edits),
                                        "--min-keep", bad, *HASHING])
        assert "--min-keep" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_memory(memory, capsys):
    memory.chmod(0o555)
    try:
        line = one_line_exit_2(capsys, ["memory", "delete", str(memory), "1"])
        assert "read-only" in line
        assert main(["memory", "stats", str(memory)]) == 0
    finally:
        memory.chmod(0o755)


@pytest.mark.parametrize("content", [
    '{"runs": [1, 2]}',
    '{"runs": [{"dataset": "d"}]}',
    '{"runs": [{"dataset": "d", "method": "m", "protocol": "p", "phase": "final", "size": 3, '
    '"n_cases": 3, "metrics": {"edit_succ": "high"}}]}',
    '{"runs": [{"dataset": "d", "method": "m", "protocol": "p", "phase": "final", "size": "3", '
    '"n_cases": 3, "metrics": {}}]}',
    "[" * 100000 + "]" * 100000,
    "{not json",
])
def test_malformed_results_json_for_eval_report(tmp_path, capsys, content):
    (tmp_path / "results.json").write_text(content)
    line = one_line_exit_2(capsys, ["eval", "report", str(tmp_path)])
    assert "results.json" in line
