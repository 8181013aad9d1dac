"""ASGI middleware of the web tier."""

from __future__ import annotations

import base64
import binascii
import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

_FORM = b"application/x-www-form-urlencoded"


async def send_error(
    send: Send, status: int, error: dict[str, str], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer with the API's error shape from middleware, below the exception handlers."""
    body = json.dumps({"error": error}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": body})


class DeclaredSizeMiddleware:
    """Refuse a body whose Content-Length is over its route's limit, before reading any of it.

    FastAPI's own limit (which also counts streamed bodies) answers in plain text; this gives
    the common case the API's JSON error, naming the field (``file`` for uploads).
    """

    def __init__(self, app: ASGIApp, default: int, routes: dict[str, tuple[int, str]]) -> None:
        self.app, self.default, self.routes = app, default, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            limit, field = self.routes.get(scope["path"], (self.default, "body"))
            declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"0")
            if declared.isdigit() and int(declared) > limit:
                message = f"{field}: the request body is larger than {limit / 1024 / 1024:g} MB"
                await send_error(send, 413, {"code": "too_large", "message": message, "field": field})
                return
        await self.app(scope, receive, send)


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
    """Require ``IMAGE_API_KEY`` on every route but /healthz and the /ui page's static files.

    As ``Authorization: Bearer <key>``, ``X-API-Key: <key>``, or (for AUTOMATIC1111's clients,
    which speak HTTP Basic) ``Authorization: Basic base64(<any user>:<key>)``. The page holds no
    secret: it asks for the key and sends it on each API call. A path such as ``/ui/../v1/x``
    is not normalised by the server: it reaches the /ui mount, whose files refuse it.
    """

    OPEN_PATHS = frozenset({"/healthz", "/ui"})
    OPEN_PREFIXES = ("/ui/",)
    BASIC_PATHS = "/sdapi/"  # A1111's clients: a 401 offers Basic too

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._open(scope["path"]) or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        error = {"code": "unauthorized", "message": "missing or wrong API key"}
        challenges = [(b"www-authenticate", b'Bearer realm="cofounder-agent"')]
        if scope["path"].startswith(self.BASIC_PATHS):
            challenges.append((b"www-authenticate", b'Basic realm="cofounder-agent"'))
        await send_error(send, 401, error, challenges)

    def _open(self, path: str) -> bool:
        return path in self.OPEN_PATHS or path.startswith(self.OPEN_PREFIXES)

    def _allowed(self, scope: Scope) -> bool:
        given = b""
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                given = value
            elif name == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
            elif name == b"authorization" and value[:6].lower() == b"basic ":
                given = _basic_password(value[6:].strip())
        # Constant-time: the comparison takes as long whatever prefix of the key was guessed.
        return hmac.compare_digest(given, self._key)


def _basic_password(credentials: bytes) -> bytes:
    """The password of HTTP Basic credentials (the user name is not checked); empty when malformed."""
    try:
        decoded = base64.b64decode(credentials, validate=True)
    except (binascii.Error, ValueError):
        return b""
    _, colon, password = decoded.partition(b":")
    return password if colon else b""


class InFlight:
    """How many HTTP requests the app is handling now (the counter behind a Prometheus gauge)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        return self.count


class InFlightMiddleware:
    """Count each HTTP request from its arrival until the app has finished with it.

    The outermost middleware, so it sees every request; a request that stays counted after
    its client left is a request task that outlived its client.
    """

    def __init__(self, app: ASGIApp, counter: InFlight) -> None:
        self.app, self.counter = app, counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.counter.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.counter.count -= 1
