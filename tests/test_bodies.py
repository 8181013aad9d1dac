"""Request bodies a careless or hostile client sends are 4xx, never a 500."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/images/generations", "/api/media/generate-image"])
def test_a_deeply_nested_body_is_a_422_not_a_500(tiny_server: str, path: str) -> None:
    # Valid JSON, 1.2 kB: deep enough to exhaust a recursive walk of the body.
    body = '{"prompt": "x", "extra": ' + "[" * 600 + "]" * 600 + "}"
    response = httpx.post(tiny_server + path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "body"
