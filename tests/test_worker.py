"""The worker outlives store errors, and jobs failed at a restart are announced."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from cofounder_agent.jobs.resolve import resolve_recipe
from cofounder_agent.jobs.store import Store, sqlite_url
from cofounder_agent.jobs.tables import JobRow
from cofounder_agent.schemas.jobs import JobCreate
from conftest import LIMIT_S, in_process_worker, make_settings, running_server, wait_ready
from webhook_receiver import Receiver

FAST: dict[str, Any] = {"prompt": "a kite", "width": 64, "height": 64, "steps": 20}


async def test_worker_survives_a_store_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with in_process_worker(settings) as (db, worker):
        real_claim, calls = db.claim_next, 0

        async def flaky_claim(worker_id: str | None = None) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("database is locked")
            return await real_claim(worker_id)

        db.claim_next = flaky_claim  # type: ignore[method-assign]
        job, _ = await db.add_job(resolve_recipe(JobCreate(**FAST), settings).model_dump(mode="json"))
        worker.start()
        deadline = time.monotonic() + LIMIT_S
        while (row := await db.get_job(job.id)) is not None and row.status != "succeeded":
            assert time.monotonic() < deadline, row.status
            await asyncio.sleep(0.05)
        assert calls >= 2


def test_jobs_failed_at_restart_are_announced(tmp_path: Path, receiver: Receiver) -> None:
    receiver.failures = 0
    settings = make_settings(tmp_path, image_webhook_allow=["127.0.0.1/32"])  # the receiver is on loopback

    async def interrupted_twice() -> str:
        db = Store(sqlite_url(settings.image_data_dir))
        await db.init()
        recipe = resolve_recipe(JobCreate(**FAST, callback_url=receiver.url), settings)  # type: ignore[arg-type]
        job, _ = await db.add_job(recipe.model_dump(mode="json"), callback_url=receiver.url)
        await db.claim_next()  # crash 1 while running: recovered and queued again
        await db.recover()
        await db.claim_next()  # running again when crash 2 happens; the server's start finds it
        await db.close()
        return job.id

    job_id = asyncio.run(interrupted_twice())
    with running_server(settings) as url:
        wait_ready(url)
        assert httpx.get(f"{url}/v1/jobs/{job_id}").json()["status"] == "failed"
        deadline = time.monotonic() + LIMIT_S
        while not receiver.received:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    payload = json.loads(receiver.received[0][2])
    assert payload["id"] == job_id and payload["status"] == "failed" and "restart" in payload["error"]


@pytest.fixture(autouse=True)
def _no_env_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGE_API_KEY", raising=False)


async def test_a_job_of_a_worker_that_died_costs_one_attempt(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with in_process_worker(settings) as (db, worker):
        job, _ = await db.add_job(resolve_recipe(JobCreate(**FAST), settings).model_dump(mode="json"))
        assert await db.claim_next("dead-worker") is not None
        async with db.session() as s, s.begin():  # it died: its lease ran out an hour ago
            await s.execute(update(JobRow).where(JobRow.id == job.id).values(lease_expires_at=db.db_time(-3600)))
        worker.start()  # its first beat reaps the job; its loop claims and runs it
        deadline = time.monotonic() + LIMIT_S
        while (row := await db.get_job(job.id)) is not None and row.status != "succeeded":
            assert time.monotonic() < deadline, row.status
            await asyncio.sleep(0.05)
        assert row is not None and (row.attempts, row.attempt_workers) == (2, ["dead-worker", worker.id])
        assert [w.id for w in await db.live_workers(60)] == [worker.id]
