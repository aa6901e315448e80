"""`lte memory build | search | delete | stats | calibrate`, and the relevance-gate choice."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lte.cli import main
from lte.memory.calibrate import choose_threshold

HASHING = ["embedder.name=hashing", "embedder.hashing_dim=128"]


def counterfact_file(path: Path, n: int = 60) -> Path:
    rows = [{"case_id": i, "subject": f"Person{i}", "prompt": f"Person{i} works in the field of",
             "target_new": f"field{i}", "ground_truth": "physics",
             "rephrase_prompt": f"What field does Person{i} work in? Person{i} works in the field of",
             "locality_prompt": f"The capital of Country{i} is",
             "locality_ground_truth": "Paris"} for i in range(n)]
    path.write_text(json.dumps(rows))
    return path


def test_build_search_delete_stats(tmp_path, capsys):
    edits = counterfact_file(tmp_path / "cf.json")
    out = tmp_path / "mem"
    assert main(["memory", "build", "--edits", str(edits), "--out", str(out), "--index", "hnsw",
                 *HASHING]) == 0
    assert "stored 60 edits" in capsys.readouterr().out
    assert main(["memory", "search", str(out), "Person7 works in the field of", "-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].split("\t")[2] == "Person7 works in the field of field7"
    first_id = int(lines[0].split("\t")[0])

    assert main(["memory", "delete", str(out), str(first_id), "999999"]) == 0
    assert "deleted 1 of 2" in capsys.readouterr().out
    assert main(["memory", "search", str(out), "Person7 works in the field of", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    assert hits and hits[0]["id"] != first_id

    assert main(["memory", "stats", str(out)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["live"], stats["deleted"], stats["superseded"]) == (59, 1, 0)
    assert stats["index"] == "HNSW32" and stats["embedder"] == "hashing"

    # A second build into the same folder refuses, in one line naming `memory add`; add adds.
    assert main(["memory", "build", "--edits", str(edits), "--out", str(out), *HASHING]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds an edit memory" in err
    assert f"lte memory add {out}" in err
    assert main(["memory", "build", "--edits", str(edits), "--out", str(out), "--append"]) == 2
    assert "`lte memory add" in capsys.readouterr().err
    assert main(["memory", "add", str(out), "--edits", str(edits)]) == 0
    # Each re-added edit supersedes its live twin; the deleted one stays deleted.
    assert "60 live, 59 superseded (59 by these edits), 1 deleted" in capsys.readouterr().out


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    edits = counterfact_file(tmp_path / "cf.json", 3)
    assert main(["memory", "build", "--edits", str(edits), "--out", str(tmp_path / "m"),
                 "--index", "IVF,Flat", *HASHING]) == 2
    assert "IVF<nlist" in capsys.readouterr().err
    assert main(["memory", "search", str(tmp_path / "nope"), "q"]) == 2
    assert "no edit memory here" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"case_id": 0, "subject": "s", "prompt": "p"}]))
    assert main(["memory", "build", "--edits", str(bad), "--out", str(tmp_path / "m2"),
                 *HASHING]) == 2
    assert not (tmp_path / "m2").exists()  # nothing created from a bad file


def test_choose_threshold_separates_and_honours_min_keep():
    pos = np.array([0.9, 0.8, 0.85, -np.inf, 0.7])
    neg = np.array([0.3, 0.5, 0.75, 0.2])
    t, keep, reject = choose_threshold(pos, neg)
    assert (t, keep, reject) == (0.8, 0.6, 1.0)
    t2, keep2, reject2 = choose_threshold(pos, neg, min_keep=0.8)
    assert t2 == 0.7 and keep2 == 0.8 and reject2 == 0.75


def test_calibrate_reports_both_rates_and_stores_the_threshold(tmp_path, capsys):
    dev = counterfact_file(tmp_path / "dev.json", 40)
    mem = tmp_path / "mem"
    assert main(["memory", "build", "--edits", str(dev), "--out", str(mem), *HASHING]) == 0
    out_json = tmp_path / "cal.json"
    assert main(["memory", "calibrate", "--dev", str(dev), "--json", str(out_json),
                 "--memory", str(mem), *HASHING]) == 0
    text = capsys.readouterr().out
    assert "rephrased questions" in text and "locality questions" in text
    figures = json.loads(out_json.read_text())
    assert figures["n_rephrase"] == 40 and figures["n_locality"] == 40
    # Rephrases share most words with their edit's question; locality questions share none.
    assert figures["keep_rate"] >= 0.9 and figures["reject_rate"] >= 0.9
    assert main(["memory", "stats", str(mem)]) == 0
    assert json.loads(capsys.readouterr().out)["threshold"] == pytest.approx(figures["threshold"])


@pytest.mark.data
def test_counterfact_build_then_rephrase_search_finds_the_record(shared_data, tmp_path, capsys):
    from lte.data.readers import read_records

    path = shared_data / "counterfact" / "counterfact-edit.json"
    out = tmp_path / "mem"
    assert main(["memory", "build", "--edits", str(path), "--out", str(out)]) == 0
    records = read_records(path)
    counts = Counter(r.subject for r in records)
    # Records whose subject no other record has (another question of the same fact supersedes).
    unique = [r for r in records if counts[r.subject] == 1][:2000:400]
    for record in unique:
        capsys.readouterr()
        assert main(["memory", "search", str(out), record.rephrase_prompts[0], "-k", "3"]) == 0
        first = capsys.readouterr().out.splitlines()[0].split("\t")
        assert first[2] == record.descriptor, (record.rephrase_prompts[0], first)


def write_jsonl(path: Path, objs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def test_add_edit_objects_to_a_built_memory_and_resolve_conflicts(tmp_path, capsys):
    """Issue 18, with MiniLM: `memory add` on a folder made by `memory build`, both from the
    edit objects of POST /v1/edits; a new wording of a fact supersedes the old one, another
    relation of the same subject stays live, and deleting the newer brings the older back."""
    out = tmp_path / "mem"
    first = write_jsonl(tmp_path / "first.jsonl", [
        {"subject": "Ada Lovelace", "prompt": "In which city was Ada Lovelace born?",
         "target_new": "Paris"},
        {"subject": "Ada Lovelace", "prompt": "What did Ada Lovelace study?",
         "target_new": "biology"},
        {"subject": "Grace Hopper", "prompt": "Where did Grace Hopper work?", "target_new": "NASA",
         "case_id": "gh"}])
    assert main(["memory", "build", "--edits", str(first), "--out", str(out)]) == 0
    assert "stored 3 edits" in capsys.readouterr().out
    second = tmp_path / "second.json"
    second.write_text(json.dumps([
        {"subject": "ada lovelace ", "prompt": "Ada Lovelace was born in the city of",
         "target_new": "Rome", "rephrase_prompts": ["Ada Lovelace's place of birth?"]},
        {"subject": "Alan Turing", "prompt": "Where did Alan Turing study?",
         "target_new": "Oxford"}]))
    assert main(["memory", "add", str(out), "--edits", str(second)]) == 0
    assert "4 live, 1 superseded (1 by these edits), 0 deleted" in capsys.readouterr().out

    def top(question: str) -> dict:
        assert main(["memory", "search", str(out), question, "--json"]) == 0
        return json.loads(capsys.readouterr().out)[0]["hits"][0]

    assert top("Where was Ada Lovelace born?")["descriptor"].endswith("Rome")  # the later wins
    assert top("What did Ada Lovelace study?")["descriptor"].endswith("biology")
    assert top("Where did Grace Hopper work?")["descriptor"].endswith("NASA")  # old, searchable
    assert top("Where did Alan Turing study?")["descriptor"].endswith("Oxford")  # new
    assert main(["memory", "stats", str(out)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["conflict"] == "embedding"
    (pair,) = stats["recent_supersessions"]
    from lte.memory import EditMemory

    with EditMemory.open(out, readonly=True) as mem:
        old, new = mem.get(pair["id"]), mem.get(pair["superseded_by"])
        assert (old.target_new, old.status, new.target_new, new.supersedes) == (
            "Paris", "superseded", "Rome", [old.id])
    assert main(["memory", "delete", str(out), str(new.id)]) == 0
    capsys.readouterr()
    assert top("Where was Ada Lovelace born?")["descriptor"].endswith("Paris")


def test_bad_edit_objects_store_nothing(tmp_path, capsys):
    out = tmp_path / "mem"
    good = write_jsonl(tmp_path / "good.jsonl", [
        {"subject": f"S{i}", "prompt": f"Who is S{i}?", "target_new": f"T{i}"} for i in range(5)])
    assert main(["memory", "build", "--edits", str(good), "--out", str(out), *HASHING]) == 0
    bad = write_jsonl(tmp_path / "bad.jsonl", [
        {"subject": "X", "prompt": "Who is X?", "target_new": "Y"},
        {"subject": "Z", "prompt": "Who is Z?", "target_new": ""}])
    capsys.readouterr()
    assert main(["memory", "add", str(out), "--edits", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{bad}, record 1, field 'target_new': must not be empty" in err
    assert main(["memory", "stats", str(out)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["live"], stats["superseded"], stats["last_seq"]) == (5, 0, 5)  # nothing stored
    # `add` needs a memory; `build` needs a new folder.
    assert main(["memory", "add", str(tmp_path / "none"), "--edits", str(good)]) == 2
    assert "lte memory build" in capsys.readouterr().err
    assert main(["memory", "add", str(out), "--edits", str(good), "index=HNSW32"]) == 2
    assert "cannot change on an existing memory" in capsys.readouterr().err
