"""Crash safety: SIGKILL the server mid-job, restart it, and every job still reaches an end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import LIMIT_S

TERMINAL = ("succeeded", "failed", "cancelled")


def _start(data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_", "PEXELS_"))}
    env |= {"IMAGE_MODEL": "tiny", "IMAGE_DATA_DIR": str(data), "IMAGE_LOG_FILE": ""}
    cmd = [sys.executable, "-m", "cofounder_agent", "serve", "--port", str(port)]
    with (data / "server.log").open("ab") as log:  # both runs, for a failure's post-mortem
        server = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    _until(server, lambda: _ready(port), "the server did not become ready")
    return server


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    except httpx.TransportError:
        return False


def _until(server: subprocess.Popen[bytes], check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` until it holds; fail only if the server died or the outer limit passed.

    No deadline assumes a machine's speed: a loaded machine only takes longer.
    """
    deadline = time.monotonic() + LIMIT_S
    while not check():
        if server.poll() is not None:
            server.kill()
            raise AssertionError(f"{what}: the server exited with {server.returncode} (see server.log)")
        if time.monotonic() > deadline:
            server.kill()
            raise AssertionError(f"{what} within {LIMIT_S} s")
        time.sleep(0.1)


def _job(base: str, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = httpx.get(f"{base}/v1/jobs/{job_id}").json()
    return job


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.slow
def test_sigkill_while_running_then_restart(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _start(tmp_path, port)
    try:
        slow = {"prompt": "interrupted", "width": 256, "height": 256, "steps": 60, "seed": 1}
        fast = {"prompt": "waiting", "width": 64, "height": 64, "steps": 20}
        running = httpx.post(f"{base}/v1/jobs", json=slow).json()
        queued = [httpx.post(f"{base}/v1/jobs", json={**fast, "seed": i}).json() for i in range(3)]
        _until(server, lambda: _job(base, running["id"])["step"] >= 2, "the slow job did not run")
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)

        server = _start(tmp_path, port)
        ids = [running["id"], *(job["id"] for job in queued)]
        _until(server, lambda: all(_job(base, i)["status"] in TERMINAL for i in ids), "the jobs did not end")
        final = {job_id: _job(base, job_id) for job_id in ids}
        # The interrupted job ran again (second attempt); the queued ones kept their place.
        assert final[running["id"]]["status"] == "succeeded" and final[running["id"]]["attempts"] == 2
        assert all(final[job["id"]]["status"] == "succeeded" for job in queued)
        assert httpx.get(f"{base}/v1/jobs", params={"limit": 100}).json()["count"] == 4
    finally:
        server.kill()
        server.wait(timeout=30)


@pytest.mark.slow
def test_sigterm_with_an_open_event_stream_stops_promptly_and_requeues(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _start(tmp_path, port)
    try:
        slow = {"prompt": "long", "width": 256, "height": 256, "steps": 60}
        job = httpx.post(f"{base}/v1/jobs", json=slow).json()
        stream = subprocess.Popen(["curl", "-sN", f"{base}/v1/jobs/{job['id']}/events"], stdout=subprocess.DEVNULL)
        _until(server, lambda: _job(base, job["id"])["step"] >= 2, "the job did not run")
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        assert time.monotonic() - started < 15  # not held open by the stream
        stream.kill()

        server = _start(tmp_path, port)
        _until(server, lambda: _job(base, job["id"])["status"] in TERMINAL, "the job did not end")
        done = _job(base, job["id"])
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 1  # a clean stop does not use up the job's retry
    finally:
        server.kill()
        server.wait(timeout=30)
