"""The OpenAI-compatible routes: `POST /v1/chat/completions` and `GET /v1/models`.

Existing clients (the `openai` package, LangChain, curl scripts) talk to LTE unchanged: the last
user message is the question, the edits retrieved for it go into the editing prompt, and the
answer comes back as `choices[0].message.content`. The retrieved edits ride along in the extra
field `retrieved` (id, descriptor, subject, score: as in `POST /v1/query`). Decoding is greedy,
as everywhere in LTE, so `temperature` and `top_p` are accepted and have no effect; system and
earlier turns are not shown to the model (the editing prompt is fixed by the alignment data).
The handlers are called by the ingress (`lte.serve.api.Api`) with itself, so auth, limits and
errors are the server's own.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from lte.serve.validation import ApiError, Limits, _check_object, _json_type, check_text

MODEL_ID = "lte"
CHAT_FIELDS = ("model", "messages", "max_tokens", "max_completion_tokens", "temperature",
               "top_p", "n", "stream", "user", "stop", "seed", "presence_penalty",
               "frequency_penalty")
MESSAGE_FIELDS = ("role", "content", "name")
ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_MESSAGES = 64


@dataclass(frozen=True)
class ChatRequest:
    question: str
    max_tokens: int | None


def _content_text(content: Any, where: str, limits: Limits) -> str:
    """A message's text: a string, or the text parts of a content-part list."""
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise ApiError(422, f"{where}[{j}]", "only text parts are supported "
                               "({\"type\": \"text\", \"text\": ...})")
            parts.append(check_text(part.get("text"), f"{where}[{j}].text", limits))
        content = "\n".join(parts)
    return check_text(content, where, limits)


def parse_chat(payload: Any, limits: Limits) -> ChatRequest:
    body = _check_object(payload, "body", CHAT_FIELDS)
    model = body.get("model")
    if model != MODEL_ID:
        raise ApiError(404 if isinstance(model, str) else 422, "model",
                       f"unknown model {model!r}; this server serves {MODEL_ID!r} (GET /v1/models)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(422, "messages", "must be a non-empty list of {role, content} objects, "
                       f"got {_json_type(messages)}")
    if len(messages) > MAX_MESSAGES:
        raise ApiError(413, "messages", f"has {len(messages)} messages; the limit is "
                       f"{MAX_MESSAGES}")
    question = None
    for i, m in enumerate(messages):
        m = _check_object(m, f"messages[{i}]", MESSAGE_FIELDS)
        if m.get("role") not in ROLES:
            raise ApiError(422, f"messages[{i}].role", f"must be one of {', '.join(ROLES)}")
        if m["role"] == "user":
            question = _content_text(m.get("content"), f"messages[{i}].content", limits)
    if question is None:
        raise ApiError(422, "messages", "holds no user message; the last one is the question")
    if body.get("stream"):
        raise ApiError(422, "stream", "streaming is not supported; send stream: false")
    if body.get("n", 1) != 1:
        raise ApiError(422, "n", "only n=1 is supported (decoding is greedy)")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                   or not 1 <= max_tokens <= limits.max_new_tokens):
        raise ApiError(422, "max_tokens", f"must be an integer within 1..{limits.max_new_tokens}")
    return ChatRequest(question=question, max_tokens=max_tokens)


def models_body() -> dict:
    return {"object": "list",
            "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "lte"}]}


async def chat_completion(api, payload: Any) -> dict:
    """Retrieve the question's edits on the ingress `api`, answer with them in the prompt."""
    chat = parse_chat(payload, api.limits)
    hits = await api._retrieve(chat.question, api.default_k)
    answer = await api.generator.answer.remote(
        (chat.question, [h["descriptor"] for h in hits], chat.max_tokens, 0))
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
        "created": int(time.time()), "model": MODEL_ID,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                     "finish_reason": "stop", "logprobs": None}],
        "retrieved": hits,
    }
