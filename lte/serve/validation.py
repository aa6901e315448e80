"""Request validation for the HTTP API: every bad request becomes an `ApiError` naming the field.

Pure functions over parsed JSON, so they are tested without a server. A batch is checked whole
before anything is stored, which is why a rejected batch writes nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

# The edit object's fields and text checks are lte.data.edit_objects' (shared with edit files).
from lte.data.edit_objects import MAX_LIST_ITEMS, FieldError, parse_edit_object
from lte.data.edit_objects import check_text as _check_text
from lte.data.edit_objects import json_type as _json_type
from lte.data.record import EditRecord

QUERY_FIELDS = ("question", "k", "target", "generate")
# Scoring fields of a query (what `lte eval --serve` needs; lte.eval.remote): several targets
# scored at once, hits beyond the prompt's k (for hit@k), descriptors given instead of retrieved
# (baselines, pre-edit predictions), and the generation length.
# `fluency_*`: the reference's sampled Fluency text of the bare question (lte.modeling.sampling).
SCORING_QUERY_FIELDS = ("targets", "hits_k", "descriptors", "max_new_tokens", "min_new_tokens",
                        "fluency_tokens", "fluency_seed", "fluency_case_id")


class ApiError(Exception):
    """A client mistake: HTTP status, the offending field (a JSON path) and what to do."""

    def __init__(self, status: int, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.status, self.field, self.message = status, field, message

    def body(self) -> dict:
        return {"error": {"field": self.field, "message": self.message}}


@dataclass(frozen=True)
class Limits:
    """The request limits of a ServeConfig (same names; their defaults and docs live there)."""

    max_body_bytes: int
    max_edits_per_request: int
    max_field_chars: int
    max_k: int
    max_new_tokens: int  # longest generation a query may ask for

    @classmethod
    def from_config(cls, cfg) -> Limits:
        return cls(cfg.max_body_bytes, cfg.max_edits_per_request, cfg.max_field_chars, cfg.max_k,
                   cfg.max_query_new_tokens)


@dataclass(frozen=True)
class Query:
    question: str
    k: int
    target: str | None
    generate: bool
    targets: tuple[str, ...] = ()  # scored one by one with the same prompt
    hits_k: int | None = None  # hits returned (>= k); the first k go into the prompt
    descriptors: tuple[str, ...] | None = None  # given: no retrieval, these are shown
    max_new_tokens: int | None = None  # None: the served model's default
    min_new_tokens: int = 0
    fluency_tokens: int | None = None  # total length (prompt included) of the Fluency sample
    fluency_seed: int | None = None
    fluency_case_id: str | None = None  # seeds the sample with the run's seed (as in-process)


def parse_json(raw: bytes, limits: Limits) -> Any:
    if len(raw) > limits.max_body_bytes:
        raise ApiError(413, "body", f"request body is {len(raw)} bytes; the limit is "
                       f"{limits.max_body_bytes}")
    if not raw.strip():
        raise ApiError(400, "body", "empty body; send a JSON object")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ApiError(400, "body", f"not valid UTF-8 JSON ({str(e)[:120]})") from None


def check_text(value: Any, field: str, limits: Limits) -> str:
    try:
        return _check_text(value, field, limits.max_field_chars)
    except FieldError as e:
        raise ApiError(422, e.field, e.message) from None


def _check_object(payload: Any, field: str, allowed: tuple[str, ...]) -> dict:
    if not isinstance(payload, dict):
        raise ApiError(422, field, f"must be a JSON object, got {_json_type(payload)}")
    for key in payload:
        if key not in allowed:
            raise ApiError(422, f"{field}.{key}" if field != "body" else key,
                           f"unknown field; allowed: {', '.join(allowed)}")
    return payload


def parse_edits(payload: Any, limits: Limits) -> list[EditRecord]:
    """`{"edits": [{subject, prompt, target_new, [case_id, ground_truth, rephrase_prompts]}]}`."""
    body = _check_object(payload, "body", ("edits",))
    if "edits" not in body:
        raise ApiError(422, "edits", "missing; send {\"edits\": [{\"subject\", \"prompt\", "
                       "\"target_new\"}, ...]}")
    edits = body["edits"]
    if not isinstance(edits, list):
        raise ApiError(422, "edits", f"must be a list, got {_json_type(edits)}")
    if not edits:
        raise ApiError(422, "edits", "must hold at least one edit")
    if len(edits) > limits.max_edits_per_request:
        raise ApiError(413, "edits", f"has {len(edits)} edits; the limit per request is "
                       f"{limits.max_edits_per_request}")
    out = []
    for i, edit in enumerate(edits):
        try:
            out.append(parse_edit_object(edit, source="serve", max_chars=limits.max_field_chars,
                                         case_id=lambda: f"serve-{uuid.uuid4().hex}"))
        except FieldError as e:
            raise ApiError(422, f"edits[{i}].{e.field}" if e.field else f"edits[{i}]",
                           e.message) from None
    return out


def parse_query(payload: Any, limits: Limits, default_k: int) -> Query:
    """`{"question": str, "k": int, "target": str, "generate": bool}`; only question is needed."""
    body = _check_object(payload, "body", QUERY_FIELDS + SCORING_QUERY_FIELDS)
    if "question" not in body:
        raise ApiError(422, "question", "missing; send {\"question\": \"...\"}")
    question = check_text(body["question"], "question", limits)
    k = body.get("k", default_k)
    if not isinstance(k, int) or isinstance(k, bool):
        raise ApiError(422, "k", f"must be an integer, got {_json_type(k)}")
    if not 1 <= k <= limits.max_k:
        raise ApiError(422, "k", f"must be within 1..{limits.max_k}, got {k}")
    target = body.get("target")
    if target is not None:
        target = check_text(target, "target", limits)
    generate = body.get("generate", True)
    if not isinstance(generate, bool):
        raise ApiError(422, "generate", f"must be true or false, got {_json_type(generate)}")
    return Query(question=question, k=k, target=target, generate=generate,
                 **_scoring_fields(body, limits, k))


def _int_field(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(422, name, f"must be an integer, got {_json_type(value)}")
    if not low <= value <= high:
        raise ApiError(422, name, f"must be within {low}..{high}, got {value}")
    return value


def _text_list(body: dict, name: str, limits: Limits, allow_empty: bool) -> tuple[str, ...] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise ApiError(422, name, f"must be a list of strings, got {_json_type(value)}")
    if not value and not allow_empty:
        raise ApiError(422, name, "must hold at least one string")
    if len(value) > MAX_LIST_ITEMS:
        raise ApiError(422, name, f"has {len(value)} items; the limit is {MAX_LIST_ITEMS}")
    return tuple(check_text(v, f"{name}[{j}]", limits) for j, v in enumerate(value))


def _scoring_fields(body: dict, limits: Limits, k: int) -> dict:
    hits_k = _int_field(body, "hits_k", k, limits.max_k)
    max_new = _int_field(body, "max_new_tokens", 1, limits.max_new_tokens)
    min_new = _int_field(body, "min_new_tokens", 0, max_new or limits.max_new_tokens) or 0
    return {"targets": _text_list(body, "targets", limits, allow_empty=False) or (),
            "hits_k": hits_k, "descriptors": _text_list(body, "descriptors", limits, True),
            "max_new_tokens": max_new, "min_new_tokens": min_new,
            "fluency_tokens": _int_field(body, "fluency_tokens", 1, limits.max_new_tokens),
            "fluency_seed": _int_field(body, "fluency_seed", 0, 2**31 - 1),
            "fluency_case_id": (check_text(body["fluency_case_id"], "fluency_case_id", limits)
                                if body.get("fluency_case_id") is not None else None)}


def parse_edit_id(text: str) -> int:
    """A path id: a decimal integer >= 0 (service ids encode their shard, see sharding.py)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ApiError(422, "id", f"must be a non-negative integer edit id, got {text[:40]!r}")
    return int(text)
