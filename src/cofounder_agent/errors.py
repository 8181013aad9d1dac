"""One error shape for every failure: ``{"error": {"code", "message", "field"?}}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cofounder_agent.contract.errors import (
    BrokenConfig,
    ClientGone,
    Conflict,
    DomainError,
    IdempotencyKeyReused,
    InvalidField,
    NotFound,
    QueueFull,
    TooLarge,
    Unavailable,
    UpstreamFailed,
    UpstreamTimeout,
)
from cofounder_agent.openai_errors import openai_error, openai_shaped
from cofounder_agent.schemas import ErrorBody, ErrorDetail

log = logging.getLogger(__name__)


# The one place a domain error becomes an HTTP status: the most specific class listed wins.
STATUS: dict[type[DomainError], int] = {
    InvalidField: 422,
    # The IETF Idempotency-Key draft (and Stripe): a reused key with another payload is a 422.
    IdempotencyKeyReused: 422,
    NotFound: 404,
    Conflict: 409,
    QueueFull: 429,
    TooLarge: 413,
    ClientGone: 499,  # nginx's "client closed request": only logs and tests ever see it
    Unavailable: 503,
    UpstreamFailed: 502,
    UpstreamTimeout: 504,
    BrokenConfig: 500,
}


# The 422's description on routes that take an Idempotency-Key (their OpenAPI responses).
KEY_REUSED = (
    "A field is invalid (code invalid_request), or the Idempotency-Key was first used for a "
    "different request (code idempotency_key_reused: use a new key)"
)


def status_of(exc: DomainError) -> int:
    """The HTTP status of a domain error: its nearest class in ``STATUS``."""
    return next((STATUS[cls] for cls in type(exc).__mro__ if cls in STATUS), 500)


class AppError(Exception):
    """An HTTP failure a route raises itself (the web tier only; below it, ``DomainError``)."""

    def __init__(
        self, status: int, code: str, message: str, *, field: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.field, self.retry_after = field, retry_after


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    retry_after: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message, field=field))
    extra = dict(headers or {}) | ({"Retry-After": str(retry_after)} if retry_after else {})
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=extra or None)


def _field_name(loc: tuple[int | str, ...]) -> str:
    # ("body", "width") -> "width"; ("body", "keywords", 3) -> "keywords.3"; ("body",) -> "body"
    parts = [str(p) for p in loc[1:]] if len(loc) > 1 and loc[0] in ("body", "query", "path") else [str(p) for p in loc]
    return ".".join(parts) or "body"


_METHODS = frozenset({"get", "put", "post", "delete", "patch"})


def _allowed_methods(request: Request, given: str | None) -> str:
    """Every method of the resource at this path, from the app's OpenAPI document.

    Each method of a path is its own route, and the router's own Allow names only the first
    route's (FastAPI's included routers hide the rest from a walk over ``app.router``); the
    document lists them all, and is the contract clients read anyway.
    """
    segments = request.url.path.rstrip("/").split("/")
    # The routes this path reaches: the most literal template wins, as in routing
    # (/v1/images/generations is that resource, not /v1/images/{image_id}).
    matches: dict[int, set[str]] = {}
    for path, item in request.app.openapi().get("paths", {}).items():
        template = path.rstrip("/").split("/")
        if len(template) == len(segments) and all(
            part == segment or (part.startswith("{") and part.endswith("}") and segment)
            for part, segment in zip(template, segments, strict=True)
        ):
            literal = sum(part == segment for part, segment in zip(template, segments, strict=True))
            matches.setdefault(literal, set()).update(method.upper() for method in item if method in _METHODS)
    # Paths outside the document (/docs, /openapi.json) keep the router's own answer.
    methods = matches[max(matches)] if matches else {m.strip() for m in (given or "").split(",") if m.strip()}
    if "GET" in methods:
        methods.add("HEAD")  # Starlette answers HEAD wherever it answers GET
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":  # loc holds a character offset, not a field
            field, message = "body", f"body: invalid JSON ({first.get('ctx', {}).get('error', 'parse error')})"
        else:
            field = _field_name(tuple(first.get("loc", ())))
            message = f"{field}: {first.get('msg', 'invalid value')}"
        return error_response(422, "invalid_request", message, field)

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.retry_after)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return error_response(status_of(exc), exc.code, exc.message, exc.field, exc.retry_after)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, "http_error"
        )
        # FastAPI answers a body it cannot parse (bad UTF-8, broken multipart) with a bare 400.
        field = "body" if exc.status_code in (400, 413) else None
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110: Allow lists every method of the resource
            headers["Allow"] = _allowed_methods(request, headers.get("Allow"))
        return error_response(exc.status_code, code, str(exc.detail), field, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        message = "internal error; see the server log"
        if openai_shaped(request.url.path):  # rendered outside the middleware that would reshape it
            return JSONResponse(openai_error(500, "internal", message, None)[1], status_code=500)
        return error_response(500, "internal", message)
