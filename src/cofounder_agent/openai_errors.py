"""OpenAI's error shape on OpenAI's paths: ``{"error": {"message", "type", "param", "code"}}``.

The ``openai`` client reads ``error.message``, ``error.param`` and ``error.code`` and raises a
typed exception by status (400 BadRequestError, 401 AuthenticationError, 429 RateLimitError,
...). It retries 409, 429 and 5xx, so an invalid request must be a 400, never a 422 or 500.
Every other path keeps the API's own shape (``{"error": {"code", "message", "field"}}``).

The translation happens at the edge, on the response: the exception handlers and the
middleware below it (API key, declared body size) answer in the API's shape, and
``OpenAIErrorShape`` rewrites those answers on OpenAI's paths. A 500 from an unhandled
exception is rendered outside every middleware, so ``errors.py`` asks ``openai_shaped`` there.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cofounder_agent.schemas.openai import OpenAIErrorBody, OpenAIErrorDetail

OPENAI_PATHS = frozenset({"/v1/images/generations", "/v1/images/edits", "/v1/images/variations", "/v1/models"})
# The API's 422 (a field is invalid) is OpenAI's 400: the client raises BadRequestError.
STATUS = {422: 400}


def error_type(status: int) -> str:
    """OpenAI's ``error.type`` for a status, named after the client's exception for it."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def openai_error(status: int, code: str | None, message: str, field: str | None) -> tuple[int, dict[str, Any]]:
    """The status and body OpenAI's clients expect for one of the API's errors."""
    status = STATUS.get(status, status)
    detail = OpenAIErrorDetail(message=message, type=error_type(status), param=field, code=code)
    return status, OpenAIErrorBody(error=detail).model_dump()


def openai_shaped(path: str) -> bool:
    return path.rstrip("/") in OPENAI_PATHS


def _translated(status: int, body: bytes) -> tuple[int, bytes]:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):  # not JSON (a framework's plain text): its text is the message
        error = {"message": body.decode(errors="replace").strip() or f"HTTP {status}"}
    if not isinstance(error, dict) or "type" in error:  # not an error, or OpenAI's shape already
        return status, body
    new_status, shaped = openai_error(status, error.get("code"), str(error.get("message", "")), error.get("field"))
    return new_status, json.dumps(shaped).encode()


class OpenAIErrorShape:
    """Rewrite error answers (4xx/5xx) on OpenAI's paths into OpenAI's shape; pass all else through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not openai_shaped(scope["path"]):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # held until the whole (small) error body is here
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status, body = _translated(start["status"], b"".join(chunks))
            kept = [
                (k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")
            ]
            headers = [*kept, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({**start, "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
