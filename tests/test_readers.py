"""Readers of the six benchmark formats: real files, small records written here, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from data_support import SHARED_FILES
from hypothesis import given, settings
from hypothesis import strategies as st

from lte.data import jsonarray
from lte.data.jsonarray import iter_json_array
from lte.data.readers import (
    FORMATS,
    ReadStats,
    detect_format,
    format_of_record,
    iter_records,
    read_records,
)
from lte.errors import UserError


def write(tmp_path: Path, records, name: str = "recs.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(records, indent=2))
    return path


# --------------------------------------------------------------------------------------------
# Small records, one per format, with every field checked
# --------------------------------------------------------------------------------------------

KNOWEDIT_ZSRE = {
    "subject": "Epaspidoceras", "target_new": "Noctuidae",
    "prompt": "Which family does Epaspidoceras belong to?", "ground_truth": ["Aspidoceratidae"],
    "rephrase_prompt": "What family are Epaspidoceras?", "cond": "x >> y || z",
    "locality": {"Relation_Specificity": [
        {"prompt": "The taxon rank of Epaspidoceras is", "ground_truth": ["genus"]}]},
    "portability": {"Reasoning": [
        {"prompt": "Common name of the family?", "ground_truth": "Owlet moths"}]},
}


def test_knowedit_zsre_fields(tmp_path):
    path = write(tmp_path, [KNOWEDIT_ZSRE])
    assert detect_format(path) == "knowedit_zsre"
    [r] = read_records(path)
    assert (r.case_id, r.source) == ("0", "recs")
    assert (r.subject, r.prompt, r.target_new) == (
        "Epaspidoceras", "Which family does Epaspidoceras belong to?", "Noctuidae")
    assert r.ground_truth == ["Aspidoceratidae"]
    assert r.rephrase_prompts == ["What family are Epaspidoceras?"]
    assert r.portability["Reasoning"][0].prompt == "Common name of the family?"
    assert r.portability["Reasoning"][0].answers == ["Owlet moths"]
    assert r.locality["Relation_Specificity"][0].answers == ["genus"]
    assert r.descriptor == "Which family does Epaspidoceras belong to? Noctuidae"


def test_synthetic_world_shape_rephrase_list_and_case_id(tmp_path):
    rec = dict(KNOWEDIT_ZSRE, case_id=41, rephrase_prompt=["Para one?", "Para two?"])
    rec["portability"] = {"Reasoning": [{"prompt": "Two hop?", "ground_truth": ["A", "A2"]}]}
    [r] = read_records(write(tmp_path, [rec], "world.json"))
    assert (r.case_id, r.source) == ("41", "world")
    assert r.rephrase_prompts == ["Para one?", "Para two?"]
    assert r.portability["Reasoning"][0].answers == ["A", "A2"]


def test_knowedit_counterfact_plain_string_answers(tmp_path):
    rec = {"subject": "Goursez Vreizh", "prompt": "The country of Goursez Vreizh is",
           "target_new": "Franche-Comté", "ground_truth": "France",
           "portability": {"Subject_Aliasing": [{"prompt": "The country of Gorsedd is",
                                                 "ground_truth": "Franche-Comté"}]},
           "locality": {"Forgetfulness": [{"prompt": "Founder?", "ground_truth": "Jean"}],
                        "Relation_Specificity": [{"prompt": "Spouse?", "ground_truth": ""}]}}
    path = write(tmp_path, [rec])
    assert detect_format(path) == "knowedit_counterfact"
    stats = ReadStats()
    [r] = read_records(path, stats=stats)
    assert r.ground_truth == ["France"] and r.rephrase_prompts == []
    assert r.portability["Subject_Aliasing"][0].answer == "Franche-Comté"
    # A question whose only answer is empty cannot be scored: dropped and counted.
    assert list(r.locality) == ["Forgetfulness"]
    assert stats.dropped_questions == {"locality.Relation_Specificity": 1}


def test_knowedit_recent_alias_lists_first_alias_canonical(tmp_path):
    rec = {"subject": "Ingrīda Amantova", "prompt": "The gender of Ingrīda Amantova is",
           "target_new": "female", "portability": {},
           "locality": {"Relation_Specificity": [
               {"prompt": "Citizenship?", "ground_truth": [["Soviet Union", "USSR"]]},
               {"prompt": "Occupation?", "ground_truth": [["psychiatrist", "shrink"],
                                                         ["physician", "doctor"], ["physician"]]},
               {"prompt": "Award?", "ground_truth": [[], ["Honorary Doctor"]]},
               {"prompt": "Nothing known?", "ground_truth": [[]]},
           ]}}
    path = write(tmp_path, [rec])
    assert detect_format(path) == "knowedit_recent"
    stats = ReadStats()
    [r] = read_records(path, stats=stats)
    assert r.ground_truth == []
    assert r.portability == {}
    qas = r.locality["Relation_Specificity"]
    assert [q.prompt for q in qas] == ["Citizenship?", "Occupation?", "Award?"]
    assert qas[0].answer == "Soviet Union" and qas[0].answers == ["Soviet Union", "USSR"]
    assert qas[1].answers == ["psychiatrist", "shrink", "physician", "doctor"]
    assert qas[2].answers == ["Honorary Doctor"]
    assert stats.dropped_questions["locality.Relation_Specificity"] == 1


def test_knowedit_wikibio(tmp_path):
    rec = {"text": "This is a passage about rick mahler. Rick Mahler was a pitcher.",
           "labels": "He was drafted by the Braves.", "concept": "rick mahler",
           "locality": {"Relation_Specificity": [
               {"prompt": "The cause of death of rick mahler is",
                "ground_truth": ["myocardial infarction"]}]}}
    path = write(tmp_path, [rec])
    assert detect_format(path) == "knowedit_wikibio"
    [r] = read_records(path)
    assert r.subject == "rick mahler"
    assert r.prompt == rec["text"] and r.target_new == rec["labels"]
    assert r.ground_truth == [] and r.portability == {}
    assert r.locality["Relation_Specificity"][0].answer == "myocardial infarction"


def test_easyedit_counterfact(tmp_path):
    rec = {"case_id": 3087, "prompt": "David Robinson professionally plays the sport",
           "target_new": "baseball", "subject": "David Robinson", "ground_truth": "basketball",
           "rephrase_prompt": "David Robinson's greatest weakness is",
           "locality_prompt": "Shaquille O'Neal plays", "locality_ground_truth": "basketball"}
    path = write(tmp_path, [rec, dict(rec, case_id=12)])
    assert detect_format(path) == "counterfact"
    r, r2 = read_records(path)
    assert (r.case_id, r2.case_id) == ("3087", "12")
    assert r.ground_truth == ["basketball"] and r.target_new == "baseball"
    assert r.rephrase_prompts == ["David Robinson's greatest weakness is"]
    assert r.locality == {"Neighborhood": [r.locality["Neighborhood"][0]]}
    assert r.locality["Neighborhood"][0].prompt == "Shaquille O'Neal plays"
    assert r.locality["Neighborhood"][0].answers == ["basketball"]


def test_mend_zsre(tmp_path):
    rec = {"subject": "UniFirst", "src": "What is the product made by UniFirst?",
           "pred": "uniform", "rephrase": "What will be the product of UniFirst?",
           "alt": "unmanned aircraft", "answers": ["uniform"],
           "loc": "nq question: john goodman's character in the big lebowski",
           "loc_ans": "Walter Sobchak", "cond": "uniform >> unmanned aircraft || ..."}
    path = write(tmp_path, [rec])
    assert detect_format(path) == "mend_zsre"
    [r] = read_records(path)
    assert (r.prompt, r.target_new) == (rec["src"], "unmanned aircraft")
    assert r.ground_truth == ["uniform"]
    assert r.rephrase_prompts == ["What will be the product of UniFirst?"]
    [loc] = r.locality["Unrelated_NQ"]
    assert loc.prompt == "john goodman's character in the big lebowski"
    assert loc.answers == ["Walter Sobchak"]


def test_empty_new_answer_is_kept_and_counted(tmp_path):
    # MEND ZsRE's train file has two records with `alt: ""`; its record count must stay 1000.
    rec = {"subject": "S", "src": "Q?", "alt": "", "answers": ["female"],
           "rephrase": "R?", "loc": "nq question: x", "loc_ans": "y"}
    stats = ReadStats()
    [r] = read_records(write(tmp_path, [rec]), stats=stats)
    assert r.target_new == "" and stats.empty_targets == 1 and stats.records == 1


def test_read_records_leaves_the_garbage_collector_on(tmp_path):
    import gc

    read_records(write(tmp_path, [KNOWEDIT_ZSRE]))
    assert gc.isenabled()
    with pytest.raises(UserError):
        read_records(write(tmp_path, [dict(KNOWEDIT_ZSRE, prompt=3)], "bad.json"))
    assert gc.isenabled()


def test_explicit_format_and_unknown_format(tmp_path):
    path = write(tmp_path, [KNOWEDIT_ZSRE])
    assert read_records(path, format="knowedit_zsre")[0].subject == "Epaspidoceras"
    with pytest.raises(UserError, match="unknown format 'zsre'.*knowedit_zsre"):
        read_records(path, format="zsre")
    # Read as another format, the first field that format needs is named.
    with pytest.raises(UserError, match=r"record 0, field 'src': missing"):
        read_records(path, format="mend_zsre")


def test_formats_registry_names_the_six_formats_and_edit_objects():
    assert set(FORMATS) == {"knowedit_zsre", "knowedit_counterfact", "knowedit_recent",
                            "knowedit_wikibio", "counterfact", "mend_zsre", "edit"}
    assert format_of_record({"foo": 1}) is None
    assert format_of_record([1]) is None


EDIT_OBJECT = {"subject": "Ada", "prompt": "Where was Ada born?", "target_new": "Paris"}


@pytest.mark.parametrize("layout", ["array", "jsonl"])
def test_edit_objects_of_the_api_read_as_records(tmp_path, layout):
    """The POST /v1/edits objects need no original answer; optional fields as there."""
    objs = [EDIT_OBJECT, {**EDIT_OBJECT, "case_id": "c1", "ground_truth": ["London"],
                          "rephrase_prompts": ["Ada's birthplace?"]}]
    path = tmp_path / ("edits.json" if layout == "array" else "edits.jsonl")
    path.write_text(json.dumps(objs) if layout == "array"
                    else "\n".join(json.dumps(o) for o in objs) + "\n")
    assert detect_format(path) == "edit"
    a, b = read_records(path)
    assert (a.case_id, a.subject, a.prompt, a.target_new, a.ground_truth) == (
        "0", "Ada", "Where was Ada born?", "Paris", [])
    assert b.case_id == "c1" and b.ground_truth == ["London"]
    assert b.rephrase_prompts == ["Ada's birthplace?"] and b.source == "edits"
    # CounterFact's `ground_truth` is a string: still CounterFact, not an edit object.
    assert format_of_record({**EDIT_OBJECT, "ground_truth": "London"}) == "counterfact"


@pytest.mark.parametrize("bad, at, message", [
    ({"target_new": ""}, "record 1, field 'target_new'", "must not be empty"),
    ({"rephrase_prompts": "x"}, "record 1, field 'rephrase_prompts'", "must be a list"),
    ({"colour": "red"}, "record 1, field 'colour'", "unknown field; allowed: subject"),
    ({"prompt": None}, "record 1, field 'prompt'", "must be a string, got null"),
])
def test_bad_edit_objects_name_file_record_and_field(tmp_path, bad, at, message):
    path = tmp_path / "edits.jsonl"
    path.write_text(json.dumps(EDIT_OBJECT) + "\n" + json.dumps({**EDIT_OBJECT, **bad}) + "\n")
    with pytest.raises(UserError, match=re.escape(f"{path}, {at}: {message}")):
        read_records(path)


def test_iter_records_streams_and_empty_list(tmp_path):
    path = write(tmp_path, [dict(KNOWEDIT_ZSRE, subject=f"s{i}") for i in range(5)])
    it = iter_records(path)
    assert next(it).subject == "s0"
    assert [r.subject for r in it] == ["s1", "s2", "s3", "s4"]
    empty = write(tmp_path, [], "empty.json")
    assert read_records(empty, format="counterfact") == []
    with pytest.raises(UserError, match="no records"):
        detect_format(empty)


# --------------------------------------------------------------------------------------------
# The streaming array reader
# --------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.dictionaries(st.text(max_size=5), st.one_of(
    st.text(max_size=12), st.integers(), st.lists(st.text(max_size=4), max_size=3)),
    max_size=4), max_size=12), chunk=st.integers(1, 40), indent=st.sampled_from([None, 0, 4]))
def test_streaming_equals_json_load_for_any_chunking(tmp_path_factory, values, chunk, indent):
    path = tmp_path_factory.mktemp("j") / "a.json"
    path.write_text(json.dumps(values, indent=indent, ensure_ascii=False), encoding="utf-8")
    old = jsonarray._CHUNK_CHARS
    jsonarray._CHUNK_CHARS = chunk
    try:
        assert list(iter_json_array(path)) == values
    finally:
        jsonarray._CHUNK_CHARS = old


# --------------------------------------------------------------------------------------------
# Bad input: one UserError naming file, record and field
# --------------------------------------------------------------------------------------------


def test_truncated_json_names_file_and_record(tmp_path):
    text = json.dumps([KNOWEDIT_ZSRE] * 3, indent=2)
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) * 2 // 3])
    with pytest.raises(UserError) as e:
        read_records(path)
    msg = str(e.value)
    assert str(path) in msg and "record 2" in msg and "truncated" in msg
    assert "\n" not in msg


def test_truncated_between_records(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(json.dumps([KNOWEDIT_ZSRE] * 2)[:-1])  # closing bracket lost
    with pytest.raises(UserError, match=r"cut.json, record 2: truncated JSON.*after 2 records"):
        read_records(path)


CF = '{"prompt": "p", "target_new": "t", "subject": "s", "ground_truth": "g"}'


@pytest.mark.parametrize("text, pattern", [
    ("", "expected a JSON list of records, but the file is empty"),
    ('"x"', r"expected a JSON list of records, but it starts with '\"'"),
    ('{"subject": "x"}', r"record 0, field 'prompt': missing"),  # JSON Lines
    (f'{CF}\n{{"a": nope}}', r"record 1: not valid JSON: Expecting value at line 2"),
    ("[1, 2]", r"record 0: a record must be a JSON object, got a number"),
    (f"[{CF},]", "record 1: not valid JSON: trailing comma"),
    (f"[{CF} {CF}]", r"record 1: not valid JSON: expected ',' or '\]' after record 0, found '\{'"),
    (f"[{CF}] x", "not valid JSON: extra data after the list"),
    ('[{"a": nope}]', r"record 0: not valid JSON: Expecting value at line 1"),
])
def test_malformed_files(tmp_path, text, pattern):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(UserError, match=pattern):
        read_records(path, format="counterfact")


def test_not_utf8_and_missing_file(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('[{"subject": "Zoë"}]'.encode("latin-1"))
    with pytest.raises(UserError, match="latin1.json: not UTF-8"):
        read_records(path)
    with pytest.raises(UserError, match="nothere.json: file not found"):
        read_records(tmp_path / "nothere.json")
    with pytest.raises(UserError, match="not a file"):
        read_records(tmp_path)


def test_unknown_record_format_lists_known_ones(tmp_path):
    with pytest.raises(UserError, match=r"record 0: not a known record format \(fields: a, b\)"
                                        r".*mend_zsre"):
        detect_format(write(tmp_path, [{"a": 1, "b": 2}]))


@pytest.mark.parametrize("change, field, message", [
    ({"target_new": 5}, "target_new", "should be a string, got a number"),
    ({"target_new": None}, "target_new", "missing"),
    ({"prompt": ""}, "prompt", "is empty"),
    ({"subject": ["a"]}, "subject", "should be a string, got a list"),
    ({"ground_truth": {"x": 1}}, "ground_truth",
     "should be a string, a list of strings or a list of alias lists, got an object"),
    ({"ground_truth": [1]}, "ground_truth", "should be a string, a list of strings"),
    ({"rephrase_prompt": [1, 2]}, "rephrase_prompt", "should be a string or a list of strings"),
    ({"case_id": 1.5}, "case_id", "should be an integer or a string"),
    ({"portability": []}, "portability", "should be an object of kinds, got a list"),
    ({"portability": {"Reasoning": {}}}, "portability.Reasoning",
     "should be a list of questions, got an object"),
    ({"portability": {"Reasoning": ["q"]}}, "portability.Reasoning[0]",
     "should be an object, got a string"),
    ({"locality": {"Relation_Specificity": [{"ground_truth": "a"}]}},
     "locality.Relation_Specificity[0].prompt", "missing"),
    ({"locality": {"Relation_Specificity": [{"prompt": "q"}]}},
     "locality.Relation_Specificity[0].ground_truth", "missing"),
    ({"locality": {"Relation_Specificity": [{"prompt": "q", "ground_truth": [["a", 3]]}]}},
     "locality.Relation_Specificity[0].ground_truth", "should be a string, a list of strings"),
])
def test_bad_record_names_file_record_and_field(tmp_path, change, field, message):
    records = [KNOWEDIT_ZSRE, KNOWEDIT_ZSRE, dict(KNOWEDIT_ZSRE, **change)]
    path = write(tmp_path, records)
    with pytest.raises(UserError) as e:
        read_records(path, format="knowedit_zsre")
    assert str(e.value).startswith(f"{path}, record 2, field '{field}': {message}")
    assert (e.value.file, e.value.record, e.value.field) == (str(path), 2, field)


@pytest.mark.parametrize("fmt, record, field", [
    ("counterfact", {"prompt": "p", "subject": "s", "target_new": "t"}, "ground_truth"),
    ("counterfact", {"prompt": "p", "subject": "s", "target_new": "t", "ground_truth": "g",
                     "locality_prompt": "lp"}, "locality_ground_truth"),
    ("mend_zsre", {"subject": "s", "src": "q", "alt": "a", "answers": []}, "answers"),
    ("mend_zsre", {"subject": "s", "src": "q", "alt": "a", "answers": ["b"], "loc_ans": "x"},
     "loc"),
    ("knowedit_wikibio", {"text": "t", "labels": "l"}, "concept"),
    ("knowedit_zsre", {"subject": "s", "prompt": "p", "target_new": "t"}, "ground_truth"),
])
def test_missing_required_field_per_format(tmp_path, fmt, record, field):
    with pytest.raises(UserError, match=rf"record 0, field '{field}'"):
        read_records(write(tmp_path, [record]), format=fmt)


# --------------------------------------------------------------------------------------------
# The real benchmark files
# --------------------------------------------------------------------------------------------


@pytest.mark.data
@pytest.mark.parametrize("name, fmt, count", SHARED_FILES, ids=[f[0] for f in SHARED_FILES])
def test_shared_file_reads(shared_data, name, fmt, count):
    path = shared_data / name
    assert detect_format(path) == fmt
    records = read_records(path)
    assert len(records) == count
    assert len({r.case_id for r in records}) == count  # ids unique within a file
    assert {r.source for r in records} == {Path(name).stem}
    for r in records:
        assert r.prompt and r.subject
        for qas in [*r.portability.values(), *r.locality.values()]:
            assert qas and all(q.prompt and q.answers and all(q.answers) for q in qas)


@pytest.mark.data
def test_shared_files_map_as_the_readme_says(shared_data):
    recent = read_records(shared_data / "knowedit/wiki_recent-recent_train.json")
    citizenship = [q for q in recent[0].locality["Relation_Specificity"]
                   if "country of citizenship" in q.prompt][0]
    assert citizenship.answer == "Soviet Union" and "USSR" in citizenship.answers

    mend = read_records(shared_data / "zsre/zsre_mend_train-1k.json")
    assert mend[0].prompt == "What is the product made by UniFirst?"
    assert mend[0].target_new == "unmanned aircraft" and mend[0].ground_truth == ["uniform"]
    assert not any(q.prompt.startswith("nq question:")
                   for r in mend for q in r.locality["Unrelated_NQ"])

    bio = read_records(shared_data / "knowedit/wikibio-test-all.json")
    assert bio[0].subject == "john russell reynolds"
    assert bio[0].prompt.startswith("This is a Wikipedia passage about john russell reynolds.")
    assert bio[0].target_new.startswith("He received general education")

    zsre = read_records(shared_data / "knowedit/ZsRE-test-all.json")
    assert zsre[0].rephrase_prompts == ["What family are Epaspidoceras?"]
    assert zsre[0].portability["Reasoning"][0].answers == ["Owlet moths"]
    assert sum(len(r.portability.get("Reasoning", [])) for r in zsre) == 771

    cf = read_records(shared_data / "counterfact/counterfact-edit-1k.json")
    assert cf[0].case_id == "3087" and cf[0].ground_truth == ["basketball"]
