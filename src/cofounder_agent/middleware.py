"""ASGI middleware of the web tier."""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

_FORM = b"application/x-www-form-urlencoded"


class FormAsJsonMiddleware:
    """Read curl's default ``-d`` content type as JSON.

    ``curl -X POST URL -d '{...}'`` labels a JSON body as a form. No endpoint here takes
    form posts, so such bodies are parsed as JSON (malformed ones still get a 422). Requests
    that carry an ``Origin`` header come from a web page: for them a form stays a form (and
    is refused), so a page cannot start generations through a visitor's browser with a
    cross-site "simple" form post.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            from_page = any(k == b"origin" for k, _ in headers)
            if not from_page and any(k == b"content-type" and v.split(b";")[0].strip() == _FORM for k, v in headers):
                scope = dict(scope)
                scope["headers"] = [(k, b"application/json") if k == b"content-type" else (k, v) for k, v in headers]
        await self.app(scope, receive, send)


class ApiKeyMiddleware:
    """Require ``IMAGE_API_KEY`` (``Authorization: Bearer`` or ``X-API-Key``) on every route but /healthz."""

    OPEN_PATHS = frozenset({"/healthz"})

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.OPEN_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": {"code": "unauthorized", "message": "missing or wrong API key"}}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="cofounder-agent"'),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope: Scope) -> bool:
        given = b""
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                given = value
            elif name == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
        # Constant-time: the comparison takes as long whatever prefix of the key was guessed.
        return hmac.compare_digest(given, self._key)
