"""ASGI middleware of the web tier."""

from __future__ import annotations

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
