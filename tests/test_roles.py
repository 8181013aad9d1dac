"""The process roles: `serve --no-worker` (an API replica), `worker` (no HTTP), `workers`, IMAGE_DEVICE lists.

Real processes on loopback against a real PostgreSQL server (tests/postgres.py); the tiny model.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from cofounder_agent.jobs.store import Store
from cofounder_agent.services.fleet import Fleet
from cofounder_agent.services.image_service import EngineStatus
from conftest import LIMIT_S, make_settings, running_server, wait_job

SMALL = {"prompt": "a role", "width": 64, "height": 64, "steps": 4, "seed": 1}


def _env(tmp_path: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_", "PEXELS_"))}
    env |= {"IMAGE_MODEL": "tiny", "IMAGE_DEVICE": "cpu", "IMAGE_DATA_DIR": str(tmp_path / "data")}
    env |= {"IMAGE_LOG_FILE": "", **extra}
    if database_url is not None:
        env["IMAGE_DATABASE_URL"] = database_url
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cofounder_agent", *args]


@contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `cofounder-agent` process, its output in ``log``; killed if still running after the block."""
    with log.open("ab") as out:
        proc = subprocess.Popen(_command(*args), env=env, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)


def _until(procs: list[subprocess.Popen[bytes]], check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` until it holds; fail if a process died or the outer limit passed (no speed assumed)."""
    deadline = time.monotonic() + LIMIT_S
    while not check():
        for proc in procs:
            assert proc.poll() is None, f"{what}: {proc.args[3]} exited with {proc.returncode} (see its log)"
        assert time.monotonic() < deadline, f"{what} within {LIMIT_S} s"
        time.sleep(0.1)


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz").status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def _replica(tmp_path: Path, database_url: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A `serve --no-worker` process answering on a free port."""
    port = _free_port()
    args = ["serve", "--no-worker", "--port", str(port)]
    with _process(args, _env(tmp_path, database_url), tmp_path / "api.log") as api:
        base = f"http://127.0.0.1:{port}"
        _until([api], lambda: _answers(base), "the API replica did not answer")
        yield base, api


def _workers(base: str) -> list[dict[str, Any]]:
    workers: list[dict[str, Any]] = httpx.get(f"{base}/api/media/health").json()["workers"]
    return workers


def _ready_here(env: dict[str, str]) -> int:
    return subprocess.run(_command("workers", "--ready-here"), env=env, capture_output=True, timeout=120).returncode


@pytest.mark.slow
def test_an_api_replica_never_loads_torch_and_is_not_ready_without_a_worker(tmp_path: Path, postgres_url: str) -> None:
    with _replica(tmp_path, postgres_url) as (base, api):
        not_ready = httpx.get(f"{base}/readyz")
        assert not_ready.status_code == 503
        error = not_ready.json()["error"]
        assert error["code"] == "not_ready" and "no worker is ready" in error["message"]
        health = httpx.get(f"{base}/api/media/health").json()
        assert health["workers"] == [] and health["generation_ok"] is False
        assert "cofounder_queue_depth 0.0" in httpx.get(f"{base}/metrics").text
        assert _ready_here(_env(tmp_path, postgres_url)) == 1
        assert "libtorch" not in Path(f"/proc/{api.pid}/maps").read_text()


@pytest.mark.slow
def test_a_worker_process_runs_the_jobs_an_api_replica_takes(tmp_path: Path, postgres_url: str) -> None:
    env = _env(tmp_path, postgres_url)
    with (
        _replica(tmp_path, postgres_url) as (base, api),
        _process(["worker"], env, tmp_path / "worker.log") as worker,
    ):
        _until([api, worker], lambda: len(_workers(base)) == 1, "the worker did not register")
        _until([api, worker], lambda: httpx.get(f"{base}/readyz").status_code == 200, "the replica did not turn ready")
        (listed,) = _workers(base)
        assert (listed["pid"], listed["device"], listed["ready"], listed["state"]) == (worker.pid, "cpu", True, "ready")
        assert listed["same_image_dir"] is True  # both mount tmp_path/data
        health = httpx.get(f"{base}/api/media/health").json()
        assert health["generation_ok"] and health["tiny_model"] and health["device"] == "cpu"

        with httpx.Client(base_url=base) as client:
            job = wait_job(client, client.post("/v1/jobs", json=SMALL).json()["id"])
        assert job["status"] == "succeeded", job
        assert job["attempt_workers"] == [listed["id"]]
        assert httpx.get(f"{base}/v1/images/{job['image_ids'][0]}").status_code == 200

        metrics = httpx.get(f"{base}/metrics").text
        assert f'cofounder_worker_ready{{device="cpu",worker="{listed["id"]}"}} 1.0' in metrics
        assert _ready_here(env) == 0
        out = subprocess.run(_command("workers", "--json"), env=env, capture_output=True, timeout=120, check=True)
        assert [json.loads(line)["id"] for line in out.stdout.decode().splitlines()] == [listed["id"]]
        assert "libtorch" not in Path(f"/proc/{api.pid}/maps").read_text()

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=LIMIT_S) == 0
        assert _workers(base) == []  # it removed its row on the way out


@pytest.mark.slow
def test_sigterm_stops_a_worker_mid_job_and_gives_the_job_back(tmp_path: Path, postgres_url: str) -> None:
    env = _env(tmp_path, postgres_url)
    with (
        _replica(tmp_path, postgres_url) as (base, api),
        _process(["worker"], env, tmp_path / "worker.log") as worker,
    ):
        long = {**SMALL, "width": 256, "height": 256, "steps": 200}
        job_id = httpx.post(f"{base}/v1/jobs", json=long).json()["id"]

        def job() -> dict[str, Any]:
            found: dict[str, Any] = httpx.get(f"{base}/v1/jobs/{job_id}").json()
            return found

        _until([api, worker], lambda: job()["step"] >= 2, "the job did not start")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=LIMIT_S) == 0
        back = job()
        # Queued again, its attempt not counted: a clean stop is not the job's fault.
        assert (back["status"], back["attempts"], back["step"]) == ("queued", 0, 0), back
        assert len(back["attempt_workers"]) == 1


@pytest.mark.parametrize("args", [["serve", "--no-worker"], ["worker"]])
def test_the_distributed_roles_refuse_sqlite(tmp_path: Path, args: list[str]) -> None:
    done = subprocess.run(_command(*args), env=_env(tmp_path, None), capture_output=True, timeout=120)
    assert done.returncode == 2
    assert "needs IMAGE_DATABASE_URL=postgresql+asyncpg://" in done.stderr.decode()


def test_a_bad_device_list_is_refused_naming_the_setting(tmp_path: Path) -> None:
    done = subprocess.run(_command("serve"), env=_env(tmp_path, None, IMAGE_DEVICE="gpu:x"), capture_output=True)
    assert done.returncode == 1 and "IMAGE_DEVICE" in done.stderr.decode() and "gpu:x" in done.stderr.decode()
    for bad in ("cuda:0,cuda:0", "cuda,cuda:0", "auto,cpu", "cpu,,cpu"):
        with pytest.raises(ValidationError, match="IMAGE_DEVICE"):
            make_settings(tmp_path, image_device=bad)
    assert make_settings(tmp_path, image_device="cuda:0, cuda:1").devices == ["cuda:0", "cuda:1"]
    assert make_settings(tmp_path, image_device="cpu,cpu").devices == ["cpu", "cpu"]


@pytest.mark.slow
def test_a_device_list_runs_one_embedded_worker_each_on_sqlite(tmp_path: Path) -> None:
    with running_server(make_settings(tmp_path, image_device="cpu,cpu")) as base:
        deadline = time.monotonic() + LIMIT_S
        while not ((live := _workers(base)) and len(live) == 2 and all(w["ready"] for w in live)):
            assert time.monotonic() < deadline, live
            time.sleep(0.1)
        assert [w["device"] for w in live] == ["cpu", "cpu"] and live[0]["id"] != live[1]["id"]
        assert httpx.get(f"{base}/readyz").status_code == 200
        with httpx.Client(base_url=base) as client:
            jobs = [client.post("/v1/jobs", json={**SMALL, "seed": seed}).json()["id"] for seed in range(4)]
            assert all(wait_job(client, job_id)["status"] == "succeeded" for job_id in jobs)


WORKER = {"host": "h", "pid": 1, "device": "cuda:0", "model": "sdxl", "precision": "fp16"}


async def test_a_replica_reports_why_no_worker_is_ready(store: Store) -> None:
    fleet = Fleet(store, {}, within_s=60)
    assert "none is live" in str((await fleet.status()).error)
    loading = EngineStatus(state="loading")
    await store.register_worker("w1", **WORKER, ready=False, engine=loading.as_json())
    assert (await fleet.status()).state == "loading" and not await fleet.ready()
    failed = EngineStatus(state="failed", error="OSError: no weights")
    assert await store.heartbeat("w1", ready=False, job_ids=(), engine=failed.as_json())
    status = await fleet.status()
    assert status.state == "failed" and "w1 failed: OSError: no weights" in str(status.error)
    ready = EngineStatus(state="ready", base_model="sdxl", device="cuda:0", precision="bf16", fast_path=("fuse_qkv",))
    await store.register_worker("w2", **WORKER, ready=True, engine=ready.as_json())
    assert await fleet.status() == ready and await fleet.ready()
    assert await fleet.engine_of("w1") == failed and await fleet.engine_of("gone") == ready
    # The heartbeat keeps the row's device and precision to what the engine reports.
    assert await store.heartbeat("w2", ready=True, job_ids={"j"}, engine=ready.as_json())
    (w2,) = [w for w in await fleet.workers() if w.id == "w2"]
    assert (w2.precision, w2.current_job_ids, w2.engine.fast_path) == ("bf16", ["j"], ("fuse_qkv",))


async def test_a_replica_is_not_ready_on_workers_that_write_into_another_image_dir(store: Store) -> None:
    # A worker whose IMAGE_DATA_DIR is not the replica's (a missing network mount): its jobs
    # would succeed and their images 404 here. The replica says so instead of turning ready.
    fleet = Fleet(store, {}, within_s=60, image_volume="a" * 32)
    ready = EngineStatus(state="ready", base_model="sdxl")
    await store.register_worker("w1", **WORKER, ready=True, engine={**ready.as_json(), "image_volume": "b" * 32})
    (w1,) = await fleet.workers()
    assert fleet.same_image_dir(w1) is False and not await fleet.ready()
    error = str((await fleet.status()).error)
    assert "w1 on h" in error and "IMAGE_DATA_DIR" in error
    await store.register_worker("w2", **WORKER, ready=True, engine={**ready.as_json(), "image_volume": "a" * 32})
    assert await fleet.ready() and (await fleet.status()).base_model == "sdxl"
