"""The OpenAI-compatible request schema (lte.serve.openai_api), without a server."""

from __future__ import annotations

import pytest

from lte.config import ServeConfig
from lte.serve.openai_api import MODEL_ID, models_body, parse_chat
from lte.serve.validation import ApiError, Limits

LIMITS = Limits.from_config(ServeConfig())


def _chat(**extra) -> dict:
    return {"model": MODEL_ID, "messages": [{"role": "user", "content": "Who is Ada?"}], **extra}


def test_the_last_user_message_is_the_question():
    chat = parse_chat({"model": MODEL_ID, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "first?"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": [{"type": "text", "text": "Where was"},
                                     {"type": "text", "text": "Ada born?"}]}]}, LIMITS)
    assert chat.question == "Where was\nAda born?" and chat.max_tokens is None
    assert parse_chat(_chat(max_tokens=5, temperature=0.7), LIMITS).max_tokens == 5
    assert parse_chat(_chat(max_completion_tokens=7), LIMITS).max_tokens == 7
    assert [m["id"] for m in models_body()["data"]] == [MODEL_ID]


@pytest.mark.parametrize("payload,status,field", [
    (_chat(model="gpt-4o"), 404, "model"),
    ({"messages": [{"role": "user", "content": "q"}]}, 422, "model"),
    (_chat(messages=[]), 422, "messages"),
    (_chat(messages=[{"role": "system", "content": "only a system turn"}]), 422, "messages"),
    (_chat(messages=[{"role": "wizard", "content": "q"}]), 422, "messages[0].role"),
    (_chat(messages=[{"role": "user", "content": ""}]), 422, "messages[0].content"),
    (_chat(messages=[{"role": "user", "content": [{"type": "image_url"}]}]), 422,
     "messages[0].content[0]"),
    (_chat(stream=True), 422, "stream"),
    (_chat(n=2), 422, "n"),
    (_chat(max_tokens=0), 422, "max_tokens"),
    (_chat(tools=[]), 422, "tools"),
    ([1, 2], 422, "body"),
])
def test_bad_requests_name_the_field(payload, status, field):
    with pytest.raises(ApiError) as exc:
        parse_chat(payload, LIMITS)
    assert (exc.value.status, exc.value.field) == (status, field)
