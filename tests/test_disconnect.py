"""No work for a client that left: a synchronous generation ends with its client's connection.

The client is a raw socket: it sends its request, stays until its job runs, then closes, as
a client giving up on its own timeout does. (A client-side timeout alone would race the
server: on a busy machine it can fire before the job even exists.)
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import LIMIT_S, make_settings, running_server, wait_ready

# Slow enough that a poll sees them running long before they end, on any machine. A client
# that leaves cancels its job early, so the first is big; a kept job runs to its end.
SLOW = {"width": 512, "height": 512}
MEDIA = {
    "prompt": "a slow one",
    "use_generation": True,
    "use_refinement": False,
    "width": 256,
    "height": 256,
    "num_inference_steps": 100,
}
OPENAI = {"prompt": "a slow one", "size": "256x256", "n": 2}
ENDPOINTS = [("/api/media/generate-image", MEDIA), ("/v1/images/generations", OPENAI)]
SLOW_ENDPOINTS = [
    ("/api/media/generate-image", MEDIA | SLOW),
    ("/v1/images/generations", OPENAI | {"size": "512x512", "n": 4}),
]
TERMINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with running_server(make_settings(tmp_path, image_refiner_model="none")) as url:
        wait_ready(url)
        yield url


def in_flight(base: str) -> float:
    """The server's count of HTTP requests in flight (this scrape included)."""
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith("cofounder_http_requests_in_flight "):
            return float(line.split()[1])
    raise AssertionError("no cofounder_http_requests_in_flight gauge")


def open_request(base: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> socket.socket:
    """Send a POST over a raw socket and leave it waiting for its answer."""
    url = urlsplit(base)
    data = json.dumps(body).encode()
    head = {"Host": url.netloc, "Content-Type": "application/json", "Content-Length": str(len(data))}
    head |= headers or {}
    request = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80))
    sock.sendall(request.encode() + data)
    return sock


def only_job(base: str, sock: socket.socket) -> dict[str, Any]:
    """Wait until the server's single job runs (or has ended); return it."""
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline:
        if select.select([sock], [], [], 0)[0]:  # answered before any job ran: say with what
            raise AssertionError(sock.recv(4096).decode(errors="replace"))
        jobs = httpx.get(f"{base}/v1/jobs").json()["data"]
        if jobs and (jobs[0]["status"] in TERMINAL or jobs[0]["step"] >= 1):
            assert len(jobs) == 1, jobs
            job: dict[str, Any] = jobs[0]
            return job
        time.sleep(0.05)
    raise AssertionError("the job did not start")


def until(base: str, check: Any, what: str) -> None:
    """Poll until ``check()`` holds; fail only if the server stops answering or the outer limit passes."""
    deadline = time.monotonic() + LIMIT_S
    while not check():
        assert time.monotonic() < deadline, what
        assert httpx.get(f"{base}/healthz").status_code == 200
        time.sleep(0.1)


def job_status(base: str, job_id: str) -> str:
    status: str = httpx.get(f"{base}/v1/jobs/{job_id}").json()["status"]
    return status


@pytest.mark.parametrize(("path", "body"), SLOW_ENDPOINTS, ids=["media", "openai"])
def test_a_client_that_leaves_cancels_its_job_and_its_request_ends(
    server: str, path: str, body: dict[str, Any]
) -> None:
    sock = open_request(server, path, body)
    try:
        job = only_job(server, sock)
        assert job["status"] == "running", job  # still running: the client is still there
        assert in_flight(server) == 2  # the waiting POST and this scrape
    finally:
        sock.close()
    until(server, lambda: job_status(server, job["id"]) in TERMINAL, "the job did not end")
    assert job_status(server, job["id"]) == "cancelled"
    until(server, lambda: in_flight(server) == 1, "a request task outlived its client")


@pytest.mark.parametrize(("path", "body"), ENDPOINTS, ids=["media", "openai"])
def test_a_client_with_an_idempotency_key_comes_back_for_its_result(
    server: str, path: str, body: dict[str, Any]
) -> None:
    key = {"Idempotency-Key": f"come-back-{path}"}
    sock = open_request(server, path, body, key)
    try:
        job = only_job(server, sock)
        assert job["status"] == "running", job
    finally:
        sock.close()
    until(server, lambda: in_flight(server) == 1, "a request task outlived its client")
    until(server, lambda: job_status(server, job["id"]) in TERMINAL, "the job did not end")
    done = httpx.get(f"{server}/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded", done

    again = httpx.post(server + path, json=body, headers=key, timeout=LIMIT_S)
    assert again.status_code == 200, again.text
    if path.startswith("/api/media"):
        assert again.json()["job_id"] == job["id"] and again.json()["image_id"] == done["image_ids"][0]
    else:
        urls = [image["url"] for image in again.json()["data"]]
        assert urls == [f"{server}/v1/images/{image_id}" for image_id in done["image_ids"]]
    assert httpx.get(f"{server}/v1/jobs").json()["count"] == 1  # the same job, not a second one


def test_a_synchronous_job_cancelled_by_someone_else_is_a_409_not_a_server_error(server: str) -> None:
    sock = open_request(server, "/v1/images/generations", OPENAI | {"size": "512x512", "n": 4})
    try:
        job = only_job(server, sock)
        assert httpx.delete(f"{server}/v1/jobs/{job['id']}", timeout=LIMIT_S).json()["status"] == "cancelled"
        sock.settimeout(LIMIT_S)
        head = sock.recv(65536).decode(errors="replace")
    finally:
        sock.close()
    assert head.startswith("HTTP/1.1 409"), head
    assert '"code":"job_cancelled"' in head.replace(" ", "")
