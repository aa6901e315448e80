"""Readers for the six benchmark formats of ../shared/data/README.md, all onto `EditRecord`,
and for the minimal edit objects of `POST /v1/edits` (format `edit`, lte.data.edit_objects).

A file is a JSON array or JSON Lines (lte.data.jsonarray). Each file holds one format, detected from its first record (`detect_format`). Records are read
one at a time (`iter_records`), so a million-record synthetic world streams in flat memory;
`read_records` is the list form. Record indices in messages are 0-based list positions.

Mapping choices (README.md lists the fields):
- `case_id`: the file's own `case_id` where it has one, else the record's index.
- `source`: the file name without `.json`, so ids are unique as `source:case_id`.
- Answers may be a string, a list of strings (aliases) or a list of alias lists (WikiData_recent,
  one list per object of a multi-valued fact). All become one flat list, duplicates removed, the
  first alias of the first object canonical. A question left with no answer (`[[]]` in
  WikiData_recent, `""` in WikiData_counterfact) cannot be scored, so it is dropped and counted
  in `ReadStats`. Records are never dropped: an empty `target_new` (two in the MEND ZsRE file)
  is kept and counted, and whoever uses the records skips it.
- EasyEdit CounterFact's `locality_prompt` is a neighbour of the subject with the same original
  answer: kind `Neighborhood`. MEND ZsRE's `loc` is an unrelated Natural Questions question:
  kind `Unrelated_NQ`.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lte.data.edit_objects import FieldError, is_edit_object, parse_edit_object
from lte.data.jsonarray import iter_json_array
from lte.data.record import QA, EditRecord
from lte.errors import UserError

KNOWEDIT_ZSRE = "knowedit_zsre"
KNOWEDIT_COUNTERFACT = "knowedit_counterfact"
KNOWEDIT_RECENT = "knowedit_recent"
KNOWEDIT_WIKIBIO = "knowedit_wikibio"
COUNTERFACT = "counterfact"
MEND_ZSRE = "mend_zsre"
EDIT = "edit"  # the minimal edit objects of `POST /v1/edits` (lte.data.edit_objects)

NEIGHBORHOOD = "Neighborhood"
UNRELATED_NQ = "Unrelated_NQ"
_NQ_PREFIX = "nq question: "
_LOOKUP = object()  # "read the field from the record", as opposed to a value passed in


@dataclass
class ReadStats:
    """What a read dropped, so that callers can say so (filled in while records stream)."""

    records: int = 0
    dropped_questions: Counter = field(default_factory=Counter)  # "portability.Kind" -> n
    # Records kept although their new answer is empty (MEND ZsRE has two with `alt: ""`); the
    # counts of the files must stay as published, so users of the records skip them.
    empty_targets: int = 0


class _Fields:
    """Typed access to one raw record; every problem names file, record index and field."""

    def __init__(self, raw: object, path: str, index: int, stats: ReadStats):
        if not isinstance(raw, dict):
            raise UserError(f"a record must be a JSON object, got {_kind(raw)}", file=path,
                            record=index)
        self.raw, self.path, self.index, self.stats = raw, path, index, stats

    def error(self, name: str, message: str) -> UserError:
        return UserError(message, file=self.path, record=self.index, field=name)

    def has(self, name: str) -> bool:
        return self.raw.get(name) is not None

    def target(self, name: str) -> str:
        """The new answer: must be a string, but may be empty (counted, not rejected)."""
        value = self.text(name, required=False)
        if not self.has(name):
            raise self.error(name, "missing")
        if not value.strip():
            self.stats.empty_targets += 1
        return value

    def text(self, name: str, required: bool = True, value: object = _LOOKUP) -> str:
        value = self.raw.get(name) if value is _LOOKUP else value
        if value is None:
            if required:
                raise self.error(name, "missing")
            return ""
        if not isinstance(value, str):
            raise self.error(name, f"should be a string, got {_kind(value)}")
        if required and not value.strip():
            raise self.error(name, "is empty")
        return value

    def texts(self, name: str) -> list[str]:
        """A string or a list of strings (e.g. `rephrase_prompt` of the synthetic world)."""
        value = self.raw.get(name)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise self.error(name, f"should be a string or a list of strings, got {_kind(value)}")

    def case_id(self) -> str:
        value = self.raw.get("case_id", self.index)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.error("case_id", f"should be an integer or a string, got {_kind(value)}")
        return str(value)

    def answers(self, name: str, value: object = _LOOKUP) -> list[str]:
        value = self.raw.get(name) if value is _LOOKUP else value
        if value is None:
            raise self.error(name, "missing")
        out = _flat_answers(value)
        if out is None:
            raise self.error(name, "should be a string, a list of strings or a list of alias "
                                   f"lists, got {_kind(value)}")
        return out

    def questions(self, section: str) -> dict[str, list[QA]]:
        """KnowEdit `portability` / `locality`: {kind: [{prompt, ground_truth}]}."""
        value = self.raw.get(section)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(section, f"should be an object of kinds, got {_kind(value)}")
        out: dict[str, list[QA]] = {}
        for kind, items in value.items():
            where = f"{section}.{kind}"
            if not isinstance(items, list):
                raise self.error(where, f"should be a list of questions, got {_kind(items)}")
            qas = []
            for j, item in enumerate(items):
                # The fast path for well-formed questions; the checks below name what is wrong.
                if type(item) is dict:
                    prompt = item.get("prompt")
                    answers = _flat_answers(item.get("ground_truth"))
                    if type(prompt) is str and prompt.strip() and answers is not None:
                        if answers:
                            qas.append(QA(prompt, answers))
                        else:
                            self.stats.dropped_questions[where] += 1
                        continue
                self._question_error(f"{where}[{j}]", item)
            if qas:
                out[kind] = qas
        return out

    def _question_error(self, at: str, item: object) -> None:
        if not isinstance(item, dict):
            raise self.error(at, f"should be an object, got {_kind(item)}")
        self.text(f"{at}.prompt", value=item.get("prompt"))
        self.answers(f"{at}.ground_truth", item.get("ground_truth"))
        raise AssertionError(f"unreachable: {at} is well-formed")  # pragma: no cover


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _flat_answers(value: object) -> list[str] | None:
    """str | [str] | [[str]] -> a flat list without duplicates or empty strings; None if ill-typed."""
    if isinstance(value, str):
        return [value] if value.strip() else []
    if type(value) is list and len(value) == 1 and type(value[0]) is str:  # the common case
        return value[:] if value[0].strip() else []
    if isinstance(value, list):
        flat = []
        for item in value:
            if isinstance(item, str):
                flat.append(item)
            elif isinstance(item, list) and all(isinstance(a, str) for a in item):
                flat.extend(item)
            else:
                return None
        return list(dict.fromkeys(a for a in flat if a.strip()))
    return None


# ---------------------------------------------------------------------------------------------
# One function per format: raw record fields -> EditRecord
# ---------------------------------------------------------------------------------------------


def _knowedit(r: _Fields, source: str, ground_truth_required: bool) -> EditRecord:
    """KnowEdit ZsRE, WikiData_counterfact and WikiData_recent share one shape."""
    ground_truth = (r.answers("ground_truth") if ground_truth_required or r.has("ground_truth")
                    else [])
    return EditRecord(
        case_id=r.case_id(), subject=r.text("subject"), prompt=r.text("prompt"),
        target_new=r.target("target_new"), ground_truth=ground_truth,
        rephrase_prompts=r.texts("rephrase_prompt"), portability=r.questions("portability"),
        locality=r.questions("locality"), source=source,
    )


def _read_knowedit_zsre(r: _Fields, source: str) -> EditRecord:
    return _knowedit(r, source, ground_truth_required=True)


def _read_knowedit_counterfact(r: _Fields, source: str) -> EditRecord:
    return _knowedit(r, source, ground_truth_required=True)


def _read_knowedit_recent(r: _Fields, source: str) -> EditRecord:
    return _knowedit(r, source, ground_truth_required=False)


def _read_knowedit_wikibio(r: _Fields, source: str) -> EditRecord:
    """The edit continues the passage `text` with the sentence `labels`; no original answer."""
    return EditRecord(
        case_id=r.case_id(), subject=r.text("concept"), prompt=r.text("text"),
        target_new=r.target("labels"), locality=r.questions("locality"), source=source,
    )


def _read_counterfact(r: _Fields, source: str) -> EditRecord:
    locality = {}
    if r.has("locality_prompt") or r.has("locality_ground_truth"):
        locality[NEIGHBORHOOD] = [QA(r.text("locality_prompt"),
                                     _nonempty(r, "locality_ground_truth"))]
    return EditRecord(
        case_id=r.case_id(), subject=r.text("subject"), prompt=r.text("prompt"),
        target_new=r.target("target_new"), ground_truth=_nonempty(r, "ground_truth"),
        rephrase_prompts=r.texts("rephrase_prompt"), locality=locality, source=source,
    )


def _read_mend_zsre(r: _Fields, source: str) -> EditRecord:
    locality = {}
    if r.has("loc") or r.has("loc_ans"):
        question = r.text("loc")
        if question.startswith(_NQ_PREFIX):
            question = question[len(_NQ_PREFIX):]
        locality[UNRELATED_NQ] = [QA(question, _nonempty(r, "loc_ans"))]
    return EditRecord(
        case_id=r.case_id(), subject=r.text("subject"), prompt=r.text("src"),
        target_new=r.target("alt"), ground_truth=_nonempty(r, "answers"),
        rephrase_prompts=r.texts("rephrase"), locality=locality, source=source,
    )


def _read_edit_object(r: _Fields, source: str) -> EditRecord:
    try:
        return parse_edit_object(r.raw, source=source, case_id=lambda: str(r.index))
    except FieldError as e:
        raise r.error(e.field, e.message) from None


def _nonempty(r: _Fields, name: str) -> list[str]:
    answers = r.answers(name)
    if not answers:
        raise r.error(name, "has no answer")
    return answers


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    read: Callable[[_Fields, str], EditRecord]


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format(KNOWEDIT_ZSRE, "KnowEdit ZsRE (also the synthetic world)", _read_knowedit_zsre),
    Format(KNOWEDIT_COUNTERFACT, "KnowEdit WikiData_counterfact", _read_knowedit_counterfact),
    Format(KNOWEDIT_RECENT, "KnowEdit WikiData_recent", _read_knowedit_recent),
    Format(KNOWEDIT_WIKIBIO, "KnowEdit WikiBio", _read_knowedit_wikibio),
    Format(COUNTERFACT, "EasyEdit CounterFact", _read_counterfact),
    Format(MEND_ZSRE, "MEND ZsRE", _read_mend_zsre),
    Format(EDIT, "edit objects of POST /v1/edits: subject, prompt, target_new [case_id, "
                 "ground_truth, rephrase_prompts]", _read_edit_object),
)}


def format_of_record(raw: object) -> str | None:
    """The format a raw record looks like, from its field names (None: none of ours)."""
    if not isinstance(raw, dict):
        return None
    if is_edit_object(raw):
        return EDIT
    keys = set(raw)
    if {"text", "labels", "concept"} <= keys:
        return KNOWEDIT_WIKIBIO
    if {"src", "alt"} <= keys:
        return MEND_ZSRE
    if not {"prompt", "target_new"} <= keys:
        return None
    if "locality_prompt" in keys or ("portability" not in keys and "locality" not in keys):
        return COUNTERFACT
    if "rephrase_prompt" in keys or isinstance(raw.get("ground_truth"), list):
        return KNOWEDIT_ZSRE
    if "ground_truth" in keys:
        return KNOWEDIT_COUNTERFACT
    return KNOWEDIT_RECENT


def detect_format(path: str | Path) -> str:
    """The format of a file, from its first record."""
    for index, raw in enumerate(iter_json_array(path)):
        name = format_of_record(raw)
        if name is None:
            keys = ", ".join(sorted(raw)) if isinstance(raw, dict) else _kind(raw)
            raise UserError(f"not a known record format (fields: {keys}); known formats: "
                            f"{', '.join(FORMATS)}", file=str(path), record=index)
        return name
    raise UserError("the file holds no records, so its format cannot be detected",
                    file=str(path))


def source_name(path: str | Path) -> str:
    name = Path(path).name
    for suffix in (".json", ".jsonl"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def iter_records(path: str | Path, format: str | None = None,
                 stats: ReadStats | None = None) -> Iterator[EditRecord]:
    """Stream the records of one file as EditRecords (format detected when not given)."""
    path_s = str(path)
    if format is None:
        format = detect_format(path)
    elif format not in FORMATS:
        raise UserError(f"unknown format {format!r}; known formats: {', '.join(FORMATS)}")
    reader = FORMATS[format].read
    source = source_name(path)
    stats = stats if stats is not None else ReadStats()
    for index, raw in enumerate(iter_json_array(path)):
        yield reader(_Fields(raw, path_s, index, stats), source)
        stats.records += 1


def read_records(path: str | Path, format: str | None = None,
                 stats: ReadStats | None = None) -> list[EditRecord]:
    """All records of one file; a malformed file or record raises `UserError` naming it."""
    # Millions of small new objects set off the cyclic garbage collector again and again (a
    # third of the time at 100k records); records hold no cycles, so it waits until the end.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return list(iter_records(path, format, stats))
    finally:
        if was_enabled:
            gc.enable()
