"""The job commands of the CLI, run as a user runs them, against a real server on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cofounder_agent.client import Client
from conftest import LIMIT_S, make_settings, pixels, running_server, wait_ready

CLI = [sys.executable, "-m", "cofounder_agent"]
FAST = ["--width", "64", "--height", "64", "--steps", "20"]
# Slow enough on 2 CPU cores (~0.1 s a step) to keep the worker busy while another job queues.
SLOW: dict[str, Any] = {"prompt": "a slow castle", "width": 384, "height": 384, "steps": 100}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(make_settings(tmp_path_factory.mktemp("cli-jobs"))) as url:
        wait_ready(url)
        yield url


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # The user's own server URL and key must not leak into the tests.
    clean = {k: v for k, v in os.environ.items() if k not in ("COFOUNDER_URL", "IMAGE_API_KEY")}
    return subprocess.run([*CLI, *args], env={**clean, **env}, capture_output=True, text=True, timeout=LIMIT_S)


def test_submit_wait_saves_the_png(server: str, tmp_path: Path) -> None:
    out = cli("submit", "a castle", *FAST, "--seed", "5", "--wait", "-o", str(tmp_path), COFOUNDER_URL=server)
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["status"] == "succeeded" and job["recipe"]["seed"] == 5
    (image_id,) = job["image_ids"]
    assert [p.name for p in tmp_path.iterdir()] == [f"{image_id}.png"]
    assert pixels(tmp_path / f"{image_id}.png").shape == (64, 64, 3)
    assert f"saved {tmp_path / image_id}.png" in out.stderr
    assert "%|" not in out.stderr  # no progress bar: stderr is not a terminal

    saved = cli("download", image_id, "-o", str(tmp_path / "again.png"), "--server", server)
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.strip() == str(tmp_path / "again.png")
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / f"{image_id}.png").read_bytes()


def test_submit_without_wait_prints_the_queued_job(server: str) -> None:
    out = cli("submit", "a castle", *FAST, "--priority", "3", "--server", server)
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["status"] in ("queued", "running", "succeeded") and job["priority"] == 3
    with Client(server) as client:
        assert client.wait(job["id"], timeout=LIMIT_S).status == "succeeded"


def test_status_cancel_and_wait_on_a_cancelled_job(server: str) -> None:
    with Client(server) as client:
        slow = client.submit(SLOW)
        queued = client.submit({**SLOW, "prompt": "queued castle"})
        try:
            cancelled = cli("cancel", queued.id, "--server", server)
            assert cancelled.returncode == 0, cancelled.stderr
            assert json.loads(cancelled.stdout)["status"] == "cancelled"

            status = cli("status", queued.id, "--server", server)
            assert status.returncode == 0 and json.loads(status.stdout)["status"] == "cancelled"

            waited = cli("wait", queued.id, "--server", server)
            assert waited.returncode == 1
            assert json.loads(waited.stdout)["status"] == "cancelled"
            assert "error: job cancelled: cancelled before it started" in waited.stderr
            assert "Traceback" not in waited.stderr
        finally:
            client.cancel(slow.id)


def test_api_errors_are_one_line_and_exit_1(server: str) -> None:
    invalid = cli("submit", "a castle", "--width", "1001", "--server", server)
    assert invalid.returncode == 1 and invalid.stdout == ""
    assert invalid.stderr.startswith("error: width:") and "Traceback" not in invalid.stderr

    missing = cli("status", "0" * 32, "--server", server)
    assert missing.returncode == 1 and missing.stderr.startswith("error: ")


def test_unreachable_server_is_an_error_not_a_traceback() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = cli("status", "x", "--server", f"http://127.0.0.1:{port}")
    assert out.returncode == 1 and out.stderr.startswith(f"error: http://127.0.0.1:{port}: ")
    assert "Traceback" not in out.stderr


def test_output_dir_needs_wait() -> None:
    out = cli("submit", "a castle", "-o", "somewhere")
    assert out.returncode == 2 and "-o/--output-dir needs --wait" in out.stderr


def test_api_key_comes_from_the_option_or_the_environment(tmp_path: Path) -> None:
    with running_server(make_settings(tmp_path, image_api_key="s3cret")) as url:
        refused = cli("status", "0" * 32, "--server", url)
        assert refused.returncode == 1 and refused.stderr.strip() == "error: missing or wrong API key"
        by_option = cli("status", "0" * 32, "--server", url, "--api-key", "s3cret")
        by_env = cli("status", "0" * 32, "--server", url, IMAGE_API_KEY="s3cret")
        for run in (by_option, by_env):  # past the key check: now the job is what is unknown
            assert run.returncode == 1 and run.stderr.startswith("error: ") and "API key" not in run.stderr
