"""Request bodies a careless or hostile client sends are 4xx, never a 500."""

from __future__ import annotations

import httpx
import pytest

DEEP = '{"prompt": "x", "extra": ' + "[" * 600 + "]" * 600 + "}"


@pytest.mark.parametrize("path", ["/v1/jobs", "/api/media/generate-image"])
def test_a_deeply_nested_body_is_a_422_not_a_500(tiny_server: str, path: str) -> None:
    # Valid JSON, 1.2 kB: deep enough to exhaust a recursive walk of the body.
    response = httpx.post(tiny_server + path, content=DEEP, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "body"


def test_a_deeply_nested_openai_body_is_a_400_in_openai_shape(tiny_server: str) -> None:
    path = "/v1/images/generations"  # OpenAI's clients raise BadRequestError on a 400 (openai_errors.py)
    response = httpx.post(tiny_server + path, content=DEEP, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "body"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/jobs", {"GET", "HEAD", "POST"}),
        ("PUT", "/v1/boards", {"GET", "HEAD", "POST"}),
        ("PUT", "/v1/jobs/0123456789abcdef0123456789abcdef", {"GET", "HEAD", "DELETE"}),
        ("POST", "/healthz", {"GET", "HEAD"}),
        ("PUT", "/v1/images/generations", {"POST"}),  # its own resource, not /v1/images/{image_id}
        ("PUT", "/v1/images/0123456789abcdef0123456789abcdef", {"GET", "HEAD", "DELETE", "PATCH"}),
    ],
)
def test_a_405_names_every_method_of_the_resource(tiny_server: str, method: str, path: str, allowed: set[str]) -> None:
    response = httpx.request(method, tiny_server + path)
    assert response.status_code == 405, response.text
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
    assert response.json()["error"]["code"] == "method_not_allowed"
