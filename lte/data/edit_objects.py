"""Minimal edit objects: what `POST /v1/edits` takes and what an edit file may hold.

`{"subject", "prompt", "target_new"}` plus the optional `case_id`, `ground_truth` (a list of
strings) and `rephrase_prompts` (a list of strings); nothing else, so a typo is refused instead
of dropped. One parser for both: the HTTP API (lte.serve.validation) turns a `FieldError` into a
422 naming the field, the file reader (lte.data.readers, format `edit`) into a `UserError` naming
file, record and field. An edit needs no original answer, so `ground_truth` may be absent.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

from lte.data.record import EditRecord

REQUIRED_EDIT_FIELDS = ("subject", "prompt", "target_new")
OPTIONAL_TEXT_FIELDS = ("case_id",)
OPTIONAL_LIST_FIELDS = ("ground_truth", "rephrase_prompts")
EDIT_FIELDS = REQUIRED_EDIT_FIELDS + OPTIONAL_TEXT_FIELDS + OPTIONAL_LIST_FIELDS
MAX_LIST_ITEMS = 64  # strings in one list field of an edit
# Terminal escape sequences (CSI such as "\x1b[31m", OSC, two-character ESC forms): what is left
# of them once the control characters are gone ("[31m") is not text a person typed.
_ESCAPE_SEQUENCE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")


class FieldError(ValueError):
    """One bad field of an edit object: its path inside the object and what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def visible_text(value: str) -> str:
    """The text without escape sequences, control/format/separator characters and whitespace."""
    return "".join(ch for ch in _ESCAPE_SEQUENCE.sub("", value)
                   if unicodedata.category(ch)[0] not in "CZ" and not ch.isspace())


def check_text(value: Any, field: str, max_chars: int | None = None) -> str:
    """A string a person could have typed: non-empty, visible, valid Unicode, no NUL."""
    if not isinstance(value, str):
        raise FieldError(field, f"must be a string, got {json_type(value)}")
    if not value.strip():
        raise FieldError(field, "must not be empty")
    if not visible_text(value):
        raise FieldError(field, "has no visible characters (only control, format or escape "
                                "characters such as \\u200b or \\x1b[31m)")
    if max_chars is not None and len(value) > max_chars:
        raise FieldError(field, f"has {len(value)} characters; the limit is {max_chars}")
    if "\x00" in value:
        raise FieldError(field, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates such as "\ud800" survive json.loads
        raise FieldError(field, "is not valid Unicode (lone surrogate)") from None
    return value


def is_edit_object(raw: object) -> bool:
    """Does a raw record look like an edit object (the required fields, no foreign ones)?

    A `ground_truth` that is a string is EasyEdit CounterFact's, not ours.
    """
    return (isinstance(raw, dict) and set(REQUIRED_EDIT_FIELDS) <= set(raw)
            and set(raw) <= set(EDIT_FIELDS) and not isinstance(raw.get("ground_truth"), str))


def parse_edit_object(raw: Any, *, source: str, case_id: Callable[[], str],
                      max_chars: int | None = None) -> EditRecord:
    """One edit object -> EditRecord; `case_id()` names an edit that brings none."""
    if not isinstance(raw, dict):
        raise FieldError("", f"must be a JSON object, got {json_type(raw)}")
    for key in raw:
        if key not in EDIT_FIELDS:
            raise FieldError(key, f"unknown field; allowed: {', '.join(EDIT_FIELDS)}")
    for name in REQUIRED_EDIT_FIELDS:
        if name not in raw:
            raise FieldError(name, "missing")
    text = {n: check_text(raw[n], n, max_chars) for n in REQUIRED_EDIT_FIELDS}
    given = raw.get("case_id")
    cid = check_text(given, "case_id", max_chars) if given is not None else case_id()
    lists = {}
    for name in OPTIONAL_LIST_FIELDS:
        value = raw.get(name, [])
        if not isinstance(value, list):
            raise FieldError(name, f"must be a list of strings, got {json_type(value)}")
        if len(value) > MAX_LIST_ITEMS:
            raise FieldError(name, f"has {len(value)} items; the limit is {MAX_LIST_ITEMS}")
        lists[name] = [check_text(v, f"{name}[{j}]", max_chars) for j, v in enumerate(value)]
    return EditRecord(case_id=cid, subject=text["subject"], prompt=text["prompt"],
                      target_new=text["target_new"], ground_truth=lists["ground_truth"],
                      rephrase_prompts=lists["rephrase_prompts"], source=source)
