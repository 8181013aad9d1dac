"""The OpenAPI document, completed with the errors every operation can answer in the API's shape."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from cofounder_agent.openai_errors import STATUS, openai_shaped

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
ERROR_CONTENT = {"application/json": {"schema": ERROR_REF}}
# Statuses any operation may answer, by what it takes. Routes declare their own (404, 409,
# 429, 503 ...); these come from the framework, the middleware and the error handlers.
BODY_ERRORS = {
    "400": "The body could not be parsed (not UTF-8, broken multipart)",
    "413": "The body is larger than the route's limit",
    "422": "A field is invalid; `error.field` names it",
}
# On OpenAI's paths: the 422's description on the 400 that replaces it.
OPENAI_ERRORS = {"400": "The body could not be parsed, or a field is invalid; `error.param` names it"}
OPENAI_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/OpenAIErrorBody"}}}
PARAMETER_ERRORS = {"422": "A field is invalid; `error.field` names it"}
AUTH_ERROR = {"401": "Missing or wrong API key (IMAGE_API_KEY)"}
# The open paths of ApiKeyMiddleware: no key, so no 401 and no security requirement.
OPEN_PATHS = frozenset({"/healthz"})
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def install_openapi(app: FastAPI, *, api_key: bool) -> None:
    """Serve the app's OpenAPI document with the shared error responses on every operation."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, routes=app.routes, description=app.description)
            app.openapi_schema = complete(doc, api_key=api_key)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(doc: dict[str, Any], *, api_key: bool) -> dict[str, Any]:
    """Declare every error an operation can answer as ``ErrorBody`` JSON (OpenAI's paths: ``OpenAIErrorBody``).

    Also drops FastAPI's unused shapes.
    """
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            added = dict(BODY_ERRORS if "requestBody" in operation else {})
            if operation.get("parameters"):
                added |= PARAMETER_ERRORS
            if api_key and path not in OPEN_PATHS:
                added |= AUTH_ERROR
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
            openai = openai_shaped(path)
            if openai:  # OpenAI's clients get a 400 where the API answers 422 (openai_errors.py)
                moved = {str(STATUS.get(int(status), int(status))): text for status, text in added.items()}
                added = {status: OPENAI_ERRORS.get(status, text) for status, text in moved.items()}
                responses.pop("422", None)  # FastAPI's own, for every route with parameters
            for status, description in added.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                # Errors are JSON whatever the success type (an SSE stream's 404 included).
                if status[0] in "45":
                    response["content"] = OPENAI_ERROR_CONTENT if openai else ERROR_CONTENT
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    if api_key:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
    return doc
