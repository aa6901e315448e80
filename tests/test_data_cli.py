"""`lte data inspect` and `lte data synth`: output, and one line + exit 2 on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from data_support import SHARED_FILES

from lte.cli import main

REPO = Path(__file__).resolve().parents[1]

KNOWEDIT_ZSRE = {
    "subject": "Epaspidoceras", "target_new": "Noctuidae",
    "prompt": "Which family does Epaspidoceras belong to?", "ground_truth": ["Aspidoceratidae"],
    "rephrase_prompt": "What family are Epaspidoceras?",
    "locality": {"Relation_Specificity": [
        {"prompt": "The taxon rank of Epaspidoceras is", "ground_truth": ["genus"]}]},
    "portability": {"Reasoning": [
        {"prompt": "Common name of the family?", "ground_truth": "Owlet moths"}]},
}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real entry point in a fresh process, as a user runs it."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "lte", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)


def write(path: Path, records) -> Path:
    path.write_text(json.dumps(records, indent=2))
    return path


def test_inspect_table_counts_kinds(tmp_path, capsys):
    recent = {"subject": "S", "prompt": "P is", "target_new": "T", "portability": {},
              "locality": {"Relation_Specificity": [{"prompt": "a", "ground_truth": [["x"]]},
                                                    {"prompt": "b", "ground_truth": [[]]}],
                           "Forgetfulness": [{"prompt": "c", "ground_truth": [["y", "z"]]}]}}
    zsre = write(tmp_path / "zsre.json", [KNOWEDIT_ZSRE] * 3)
    rec = write(tmp_path / "recent.json", [recent] * 2)
    assert main(["data", "inspect", str(zsre), str(rec)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["file", "format", "records", "portability", "(questions)",
                              "locality", "(questions)"]
    assert out[2].split() == [str(zsre), "knowedit_zsre", "3", "Reasoning", "3",
                              "Relation_Specificity", "3"]
    assert out[3].split() == [str(rec), "knowedit_recent", "2", "-", "Forgetfulness", "2,",
                              "Relation_Specificity", "2"]
    assert out[4] == f"note: {rec}: 2 questions without any answer dropped"


def test_inspect_json(tmp_path, capsys):
    zsre = write(tmp_path / "zsre.json", [KNOWEDIT_ZSRE] * 2)
    assert main(["data", "inspect", "--json", str(zsre)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row == {"file": str(zsre), "format": "knowedit_zsre", "records": 2,
                   "portability": {"Reasoning": 2}, "locality": {"Relation_Specificity": 2},
                   "dropped_questions": 0, "empty_targets": 0}


def test_inspect_bad_file_one_line_exit_2(tmp_path):
    good = write(tmp_path / "good.json", [KNOWEDIT_ZSRE] * 3)
    text = json.dumps([KNOWEDIT_ZSRE] * 3, indent=2)
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) // 2])
    res = run_cli("data", "inspect", str(good), str(cut))
    assert res.returncode == 2
    assert res.stdout == ""  # no partial table
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert lines[0].startswith(f"lte: error: {cut}, record 1: truncated JSON")


@pytest.mark.parametrize("records, expect", [
    ([dict(KNOWEDIT_ZSRE, target_new=7)], "record 0, field 'target_new': should be a string"),
    ([KNOWEDIT_ZSRE, {k: v for k, v in KNOWEDIT_ZSRE.items() if k != "subject"}],
     "record 1, field 'subject': missing"),
    ({"not": "a list"}, "record 0: not a known record format (fields: not)"),
    ("a string", "expected a JSON list of records"),
])
def test_inspect_bad_records_exit_2(tmp_path, capsys, records, expect):
    path = write(tmp_path / "bad.json", records)
    assert main(["data", "inspect", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and expect in captured.err and str(path) in captured.err


def test_inspect_unknown_format_flag(tmp_path, capsys):
    path = write(tmp_path / "z.json", [KNOWEDIT_ZSRE])
    assert main(["data", "inspect", "--format", "nope", str(path)]) == 2
    assert "--format 'nope' is not one of knowedit_zsre" in capsys.readouterr().err


@pytest.mark.parametrize("n", ["9", "1000001", "-5"])
def test_synth_edits_out_of_range(tmp_path, capsys, n):
    out = tmp_path / "w.json"
    assert main(["data", "synth", "--edits", n, "--seed", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--edits {n} is out of range" in err
    assert not out.exists()


def test_synth_writes_a_world_the_readers_read(tmp_path, capsys):
    pytest.importorskip("lte.data.synth")
    from lte.data.readers import detect_format, read_records

    out = tmp_path / "w.json"
    assert main(["data", "synth", "--edits", "25", "--seed", "3", "--out", str(out)]) == 0
    assert detect_format(out) == "knowedit_zsre"
    records = read_records(out)
    assert len(records) == 25 and len({r.case_id for r in records}) == 25
    assert all(len(r.rephrase_prompts) >= 2 for r in records)  # a list in the world's shape
    assert all(r.locality and r.portability and r.ground_truth for r in records)
    assert main(["data", "inspect", str(out)]) == 0
    assert "knowedit_zsre" in capsys.readouterr().out
    # The reader and the generator agree on what each world record means.
    from lte.data.synth import generate_world, to_edit_record

    assert records == [to_edit_record(d, source="w") for d in generate_world(25, 3)]


def test_synth_out_is_a_folder(tmp_path, capsys):
    assert main(["data", "synth", "--edits", "10", "--out", str(tmp_path)]) == 2
    assert "--out names a folder" in capsys.readouterr().err


@pytest.mark.data
def test_inspect_shared_data(shared_data):
    files = sorted(shared_data.glob("*/*.json"))
    res = run_cli("data", "inspect", "--json", *map(str, files))
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    got = {Path(r["file"]).relative_to(shared_data).as_posix(): (r["format"], r["records"])
           for r in rows}
    assert got == {name: (fmt, n) for name, fmt, n in SHARED_FILES}
    zsre = next(r for r in rows if r["file"].endswith("ZsRE-test-all.json"))
    assert zsre["portability"] == {"Reasoning": 771, "Subject_Aliasing": 264,
                                   "Logical_Generalization": 269}
    assert zsre["locality"] == {"Relation_Specificity": 2608}
