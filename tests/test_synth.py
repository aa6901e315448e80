"""The synthetic world: KnowEdit ZsRE shape, counterfactual edits, determinism, bounds."""

from __future__ import annotations

import json
import random

import pytest

from lte.data import synth
from lte.data.record import QA, EditRecord
from lte.errors import UserError


def _world(tmp_path, n=300, seed=5):
    path = synth.write_world(tmp_path / "w.json", n, seed)
    return path, json.loads(path.read_text())


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    a = synth.write_world(tmp_path / "a.json", 500, 3).read_bytes()
    b = synth.write_world(tmp_path / "b.json", 500, 3).read_bytes()
    c = synth.write_world(tmp_path / "c.json", 500, 4).read_bytes()
    assert a == b
    assert a != c
    assert not list(tmp_path.glob("*.tmp"))


def test_records_have_the_knowedit_zsre_shape(tmp_path):
    _, recs = _world(tmp_path)
    assert len(recs) == 300
    for r in recs:
        assert isinstance(r["subject"], str) and r["subject"] in r["prompt"]
        assert isinstance(r["ground_truth"], list) and len(r["ground_truth"]) == 1
        assert len(r["rephrase_prompt"]) >= 2
        assert len(set(r["rephrase_prompt"]) | {r["prompt"]}) == len(r["rephrase_prompt"]) + 1
        assert all(r["subject"] in q for q in r["rephrase_prompt"])
        (hop,) = r["portability"]["Reasoning"]
        assert hop["prompt"] and hop["ground_truth"][0]
        loc = r["locality"]["Relation_Specificity"]
        assert len(loc) == 4
        same = [q for q in loc if r["subject"] in q["prompt"]]
        other = [q for q in loc if r["subject"] not in q["prompt"]]
        assert len(same) == 2 and len(other) == 2, loc
        assert same[0]["prompt"] != same[1]["prompt"]


def test_edits_are_counterfactual_and_keep_the_object_type(tmp_path):
    _, recs = _world(tmp_path)
    for r in recs:
        rel = synth.RELATIONS[synth.RELATION_INDEX[r["relation"]]]
        assert r["target_new"] != r["ground_truth"][0]
        if rel.pool is not None:
            assert r["target_new"] in rel.pool and r["ground_truth"][0] in rel.pool
        else:  # spouse: a person's name, two capitalised words
            assert len(r["target_new"].split()) == 2
    assert len({r["relation"] for r in recs}) == len(synth.RELATIONS)


def test_two_hop_answers_follow_from_the_new_object(tmp_path):
    _, recs = _world(tmp_path)
    for r in recs:
        hop = r["portability"]["Reasoning"][0]["ground_truth"][0]
        if r["relation"] == "birthplace":
            assert hop == synth.CITY_COUNTRY[r["target_new"]]
        elif r["relation"] == "employer":
            assert hop == synth.COMPANY_CITY[r["target_new"]]


def test_locality_never_asks_an_edited_fact(tmp_path):
    _, recs = _world(tmp_path, n=400)
    edited = set()
    for r in recs:
        rel = synth.RELATIONS[synth.RELATION_INDEX[r["relation"]]]
        edited |= {t.format(s=r["subject"]) for t in rel.templates}
    for r in recs:
        for q in r["locality"]["Relation_Specificity"]:
            assert q["prompt"] not in edited


def test_names_are_unique_and_pronounceable():
    world = synth.World(9)
    names = [world.name(i) for i in range(20000)]
    assert len(set(names)) == len(names)
    for n in names[:200]:
        first, last = n.split()
        assert first[0].isupper() and last[0].isupper()
        assert any(v in first for v in "aeiou")


@pytest.mark.parametrize("n", [0, -1, synth.MAX_EDITS + 1, 2.5, True])
def test_edit_count_out_of_range_is_a_user_error(tmp_path, n):
    with pytest.raises(UserError, match="edits"):
        synth.write_world(tmp_path / "w.json", n, 0)
    assert not (tmp_path / "w.json").exists()


def test_missing_output_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        synth.write_world(tmp_path / "nope" / "w.json", 10, 0)


def test_smallest_world_and_a_large_one_stream(tmp_path):
    _, recs = _world(tmp_path, n=10)
    assert [r["case_id"] for r in recs] == list(range(10))
    path = synth.write_world(tmp_path / "big.json", 20_000, 2)
    text = path.read_text()
    assert text.startswith("[\n") and text.endswith("\n]\n")
    assert text.count('"case_id"') == 20_000


def test_generate_world_matches_the_file(tmp_path):
    path, recs = _world(tmp_path, n=50)
    assert list(synth.generate_world(50, 5)) == recs


def test_to_edit_record_and_the_reader_agree(tmp_path):
    path, recs = _world(tmp_path, n=40)
    mine = [synth.to_edit_record(r) for r in recs]
    assert all(isinstance(r, EditRecord) for r in mine)
    assert mine[0].descriptor == f"{recs[0]['prompt']} {recs[0]['target_new']}"
    assert mine[0].rephrase_prompts == recs[0]["rephrase_prompt"]
    readers = pytest.importorskip("lte.data.readers")
    theirs = readers.read_records(path)
    assert len(theirs) == 40
    for a, b in zip(mine, theirs, strict=True):
        assert (a.prompt, a.target_new, a.ground_truth, a.rephrase_prompts) == (
            b.prompt, b.target_new, b.ground_truth, b.rephrase_prompts)
        assert len(b.locality["Relation_Specificity"]) == 4


def test_world_instructions_answer_from_original_facts():
    pairs = list(synth.world_instructions(60, 3))
    assert len({k for k, _ in pairs}) == 60
    assert all(isinstance(qa, QA) and qa.prompt and qa.answer for _, qa in pairs)
    world = synth.World(3)
    described = [(k, qa) for k, qa in pairs if qa.prompt.startswith("Describe")]
    assert described
    for k, qa in described:
        i = int(k.split(":")[1])
        assert qa.answer.startswith(world.name(i))
        assert any(world.fact(i, r) in qa.answer for r in range(len(synth.RELATIONS)))


def test_fresh_objects_have_the_type_shape():
    rng = random.Random(0)
    emp = synth.RELATION_INDEX["employer"]
    company = synth.fresh_object(emp, rng)
    assert company.split()[-1] in synth._COMPANY_SUFFIXES
    assert synth.fresh_object(synth.RELATION_INDEX["occupation"], rng) is None
    assert len(synth.fresh_object(synth.RELATION_INDEX["spouse"], rng).split()) == 2
