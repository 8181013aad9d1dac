"""Crash safety: SIGKILL the server mid-job, restart it, and every job still reaches an end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest


def _start(data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_", "PEXELS_"))}
    env |= {"IMAGE_MODEL": "tiny", "IMAGE_DATA_DIR": str(data), "IMAGE_LOG_FILE": ""}
    cmd = [sys.executable, "-m", "cofounder_agent", "serve", "--port", str(port)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise TimeoutError("server did not become ready")


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
        slow = {"prompt": "interrupted", "width": 384, "height": 384, "steps": 60, "seed": 1}
        fast = {"prompt": "waiting", "width": 64, "height": 64, "steps": 20}
        running = httpx.post(f"{base}/v1/jobs", json=slow).json()
        queued = [httpx.post(f"{base}/v1/jobs", json={**fast, "seed": i}).json() for i in range(3)]
        deadline = time.monotonic() + 60
        while httpx.get(f"{base}/v1/jobs/{running['id']}").json()["step"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)

        server = _start(tmp_path, port)
        ids = [running["id"], *(job["id"] for job in queued)]
        final: dict[str, Any] = {}
        deadline = time.monotonic() + 180
        while len(final) < len(ids):
            assert time.monotonic() < deadline, final
            for job_id in ids:
                job = httpx.get(f"{base}/v1/jobs/{job_id}").json()
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    final[job_id] = job
            time.sleep(0.2)
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
        slow = {"prompt": "long", "width": 384, "height": 384, "steps": 60}
        job = httpx.post(f"{base}/v1/jobs", json=slow).json()
        stream = subprocess.Popen(["curl", "-sN", f"{base}/v1/jobs/{job['id']}/events"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while httpx.get(f"{base}/v1/jobs/{job['id']}").json()["step"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        assert time.monotonic() - started < 15  # not held open by the stream
        stream.kill()

        server = _start(tmp_path, port)
        deadline = time.monotonic() + 120
        while (done := httpx.get(f"{base}/v1/jobs/{job['id']}").json())["status"] != "succeeded":
            assert done["status"] in ("queued", "running") and time.monotonic() < deadline, done
            time.sleep(0.2)
        assert done["attempts"] == 1  # a clean stop does not use up the job's retry
    finally:
        server.kill()
        server.wait(timeout=30)
