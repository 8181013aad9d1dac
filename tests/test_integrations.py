"""API keys, webhooks, metrics, JSON logs and the OpenAI-compatible endpoint, with real peers."""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from cofounder_agent.logging_setup import configure_logging, job_context
from cofounder_agent.services.webhooks import SIGNATURE_HEADER, sign
from conftest import LIMIT_S, make_settings, running_server, wait_ready
from webhook_receiver import Receiver

FAST: dict[str, Any] = {"prompt": "a kite", "width": 64, "height": 64, "steps": 20}


def _wait(url: str, job_id: str, **headers: str) -> dict[str, Any]:
    deadline = time.monotonic() + LIMIT_S
    while True:
        job: dict[str, Any] = httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = make_settings(
        tmp_path_factory.mktemp("integrations"),
        image_webhook_secret="hook-secret",
        image_webhook_allow=["127.0.0.1/32"],  # the receiver is on loopback
    )
    with running_server(settings) as url:
        wait_ready(url)
        yield url


# --- API key -----------------------------------------------------------------------------


def test_api_key_guards_every_route_but_healthz(tmp_path: Path) -> None:
    with running_server(make_settings(tmp_path, image_api_key="s3cret-key")) as url:
        good = {"Authorization": "Bearer s3cret-key"}
        spec = httpx.get(f"{url}/openapi.json", headers=good).json()
        routes = [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]
        assert len(routes) >= 15
        for method, path in routes:
            concrete = path.replace("{job_id}", "0" * 32).replace("{image_id}", "0" * 32)
            concrete = concrete.replace("{board_id}", "0" * 32)
            response = httpx.request(method, url + concrete, headers={"Authorization": "Bearer wrong"})
            expected = 200 if path == "/healthz" else 401
            assert response.status_code == expected, (method, path, response.status_code)
        assert httpx.get(f"{url}/openapi.json").status_code == 401
        assert httpx.get(f"{url}/docs").status_code == 401
        assert httpx.get(f"{url}/readyz", headers={"X-API-Key": "s3cret-key"}).status_code in (200, 503)
        assert httpx.get(f"{url}/v1/jobs", headers=good).status_code == 200
        refused = httpx.get(f"{url}/v1/jobs")
        assert refused.json()["error"]["code"] == "unauthorized" and "Bearer" in refused.headers["www-authenticate"]


# --- webhooks ----------------------------------------------------------------------------


def test_webhook_is_retried_signed_and_carries_the_final_job(server: str, receiver: Receiver) -> None:
    job = httpx.post(f"{server}/v1/jobs", json={**FAST, "callback_url": receiver.url}).json()
    assert _wait(server, job["id"])["status"] == "succeeded"
    deadline = time.monotonic() + LIMIT_S
    while len(receiver.received) < 2:
        assert time.monotonic() < deadline, receiver.received
        time.sleep(0.05)
    (first, _, _), (second, headers, body) = receiver.received[:2]
    assert (first, second) == (500, 200)  # retried after the failure
    payload = json.loads(body)
    assert payload["id"] == job["id"] and payload["status"] == "succeeded" and len(payload["image_ids"]) == 1
    timestamp = headers["X-Cofounder-Timestamp"]
    assert headers[SIGNATURE_HEADER] == sign("hook-secret", timestamp, body)


def test_unreachable_webhook_never_stops_the_worker(server: str) -> None:
    dead = httpx.post(f"{server}/v1/jobs", json={**FAST, "callback_url": "http://127.0.0.1:9/nothing"}).json()
    after = httpx.post(f"{server}/v1/jobs", json=FAST).json()
    assert _wait(server, dead["id"])["status"] == "succeeded"
    assert _wait(server, after["id"])["status"] == "succeeded"


# --- metrics -----------------------------------------------------------------------------


def test_metrics_are_prometheus_text(server: str) -> None:
    _wait(server, httpx.post(f"{server}/v1/jobs", json=FAST).json()["id"])
    # The job's latencies come through the outbox, a moment after its end: poll for them.
    deadline = time.monotonic() + LIMIT_S
    while True:
        response = httpx.get(f"{server}/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(response.text)}
        stages = {s.labels["stage"] for s in families["cofounder_stage_seconds"].samples if "stage" in s.labels}
        if {"base", "refiner", "decode"} <= stages:
            break
        assert time.monotonic() < deadline, stages
        time.sleep(0.05)
    jobs = {s.labels["status"]: s.value for s in families["cofounder_jobs"].samples}
    assert jobs["succeeded"] >= 1 and families["cofounder_queue_depth"].samples[0].value >= 0


# --- JSON logs ---------------------------------------------------------------------------


def test_json_logs_carry_the_job_id(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)  # pytest's own capture handlers live here
    try:
        configure_logging("INFO", None, "json")
        with job_context("job-123"):
            logging.getLogger("cofounder_agent.test").info("stage done")
        logging.getLogger("cofounder_agent.test").info("outside")
        lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
        assert lines[0]["message"] == "stage done" and lines[0]["job_id"] == "job-123"
        assert lines[1]["job_id"] is None
    finally:
        for handler in root.handlers:
            if handler not in saved[0]:
                handler.close()
        root.handlers[:], root.level = saved


# --- OpenAI compatibility --------------------------------------------------------------------


@pytest.mark.slow
def test_openai_client_b64_json_1024(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", timeout=LIMIT_S)
    result = client.images.generate(model="sdxl", prompt="a lighthouse", size="1024x1024", response_format="b64_json")
    assert result.created > 0 and len(result.data) == 1 and result.data[0].revised_prompt == "a lighthouse"
    with Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or ""))) as image:
        assert (image.format, image.size) == ("PNG", (1024, 1024))


def test_openai_client_urls_and_errors(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", timeout=LIMIT_S)
    result = client.images.generate(prompt="two kites", n=2, size="64x64", response_format="url")  # type: ignore[arg-type]
    urls = [item.url or "" for item in result.data]
    assert len(urls) == 2 and all(httpx.get(u).headers["content-type"] == "image/png" for u in urls)
    with pytest.raises(openai.BadRequestError) as raised:  # a 400: the client retries no 4xx but 409/429
        client.images.generate(prompt="x", size="1001x1001")  # type: ignore[arg-type]
    assert raised.value.param == "size" and raised.value.body["type"] == "invalid_request_error"  # type: ignore[index]
