"""Source selection with Pexels: stock photos when asked, and as the fallback of generation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import LIMIT_S, make_settings, running_server, wait_ready
from pexels_fakes import API_KEY, FakePexels

URL = "/api/media/generate-image"


@pytest.fixture
def fake() -> FakePexels:
    return FakePexels()


@pytest.fixture
def pexels_server(tmp_path: Path, fake: FakePexels) -> Iterator[str]:
    with running_server(make_settings(tmp_path, pexels_api_key=API_KEY), fake.transport()) as url:
        wait_ready(url)
        yield url


@pytest.fixture
def broken_model_server(tmp_path: Path, fake: FakePexels) -> Iterator[str]:
    settings = make_settings(tmp_path, pexels_api_key=API_KEY, image_model=str(tmp_path / "no-such-model"))
    with running_server(settings, fake.transport()) as url:
        deadline = time.monotonic() + LIMIT_S
        while httpx.get(url + "/api/media/health").json()["model_state"] != "failed":
            assert time.monotonic() < deadline, "model loading did not fail"
            time.sleep(0.05)
        yield url


def _assert_stock_photo(base_url: str, body: dict[str, Any]) -> None:
    assert body["source"] == "pexels" and body["seed"] is None
    assert body["pexels"] == {
        "photographer": "Joey Farina",
        "photographer_url": "https://www.pexels.com/@joey",
        "photo_url": "https://www.pexels.com/photo/brown-rocks-during-golden-hour-2014422/",
        "attribution": "Photos provided by Pexels",
        "link": "https://www.pexels.com",
    }
    image = httpx.get(body["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert body["image_url"].startswith(base_url + "/v1/images/")


def test_stock_photo_when_generation_is_off(pexels_server: str, fake: FakePexels) -> None:
    response = httpx.post(
        pexels_server + URL, json={"prompt": "a castle", "keywords": ["castle", "hill"], "width": 1200, "height": 800}
    )
    assert response.status_code == 200, response.text
    _assert_stock_photo(pexels_server, response.json())
    search = fake.requests[0]
    assert search.url.params["query"] == "castle hill" and search.url.params["orientation"] == "landscape"
    assert response.json()["generation_error"] is None


def test_generation_is_preferred_when_asked(pexels_server: str, fake: FakePexels) -> None:
    body = {"prompt": "a castle", "use_generation": True, "width": 64, "height": 64, "num_inference_steps": 20}
    response = httpx.post(pexels_server + URL, json=body, timeout=LIMIT_S)
    assert response.json()["source"] == "tiny"
    assert fake.requests == []


def test_pexels_is_the_fallback_when_the_model_failed(broken_model_server: str) -> None:
    response = httpx.post(broken_model_server + URL, json={"prompt": "a castle", "use_generation": True})
    assert response.status_code == 200, response.text
    body = response.json()
    _assert_stock_photo(broken_model_server, body)
    assert "image model is failed" in body["generation_error"] and "no such folder" in body["generation_error"]


def test_bad_input_is_422_even_when_pexels_could_serve(pexels_server: str, fake: FakePexels) -> None:
    body = {"prompt": "a castle", "use_generation": True, "refiner_mode": "img2img", "refiner_steps": 2}
    response = httpx.post(pexels_server + URL, json=body)
    assert response.status_code == 422 and response.json()["error"]["field"] == "refiner_strength"
    assert fake.requests == []


def test_failed_model_without_pexels_is_503_and_not_ready(broken_model_server: str) -> None:
    response = httpx.post(broken_model_server + URL, json={"prompt": "x", "use_generation": True, "use_pexels": False})
    assert response.status_code == 503
    assert "no such folder" in response.json()["error"]["message"]
    ready = httpx.get(broken_model_server + "/readyz")
    assert ready.status_code == 503 and "failed" in ready.json()["error"]["message"]
    health = httpx.get(broken_model_server + "/api/media/health").json()
    assert (health["sdxl_ok"], health["generation_ok"], health["pexels_ok"]) == (False, False, True)
    assert "no such folder" in health["load_error"]


def test_pexels_rate_limit_is_503_with_retry_after(tmp_path: Path) -> None:
    fake = FakePexels(search_status=429)
    with running_server(make_settings(tmp_path, pexels_api_key=API_KEY), fake.transport()) as url:
        response = httpx.post(url + URL, json={"prompt": "a castle"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "pexels_rate_limited"
    assert int(response.headers["Retry-After"]) > 0


def test_no_stock_photo_found_is_404(tmp_path: Path) -> None:
    with running_server(make_settings(tmp_path, pexels_api_key=API_KEY), FakePexels(photos=0).transport()) as url:
        response = httpx.post(url + URL, json={"prompt": "a castle"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "no_stock_photo"
