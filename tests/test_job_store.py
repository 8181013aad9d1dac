"""The SQL store's own rules: recovery after a crash, the queue limit, finishing once, older data dirs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cofounder_agent.jobs.store import QueueFull, Store, sqlite_url


async def test_interrupted_jobs_are_requeued_once_then_failed(store: Store) -> None:
    job, _ = await store.add_job({"n": 1})
    waiting, _ = await store.add_job({"n": 2})
    await store.claim_next()  # running when the "crash" happens
    assert await store.recover() == ([job.id], [])
    assert (await store.get_job(waiting.id)).status == "queued"  # type: ignore[union-attr]
    again = await store.claim_next()
    assert again is not None and again.id == job.id and again.attempts == 2
    assert await store.recover() == ([], [job.id])
    failed = await store.get_job(job.id)
    assert failed is not None and failed.status == "failed"
    assert failed.error == "interrupted by a server restart 2 times; not retried again"


async def test_recovery_keeps_a_cancel_that_was_asked(store: Store) -> None:
    job, _ = await store.add_job({"n": 1})
    await store.claim_next()
    assert await store.request_cancel(job.id)
    assert await store.recover() == ([job.id], [])
    again = await store.claim_next()
    assert again is not None and again.cancel_requested  # its worker stops it before its first step


async def test_queue_limit_counts_queued_jobs_only(store: Store) -> None:
    await store.add_job({"n": 1}, max_queued=1)
    with pytest.raises(QueueFull):
        await store.add_job({"n": 2}, max_queued=1)
    await store.claim_next()
    await store.add_job({"n": 3}, max_queued=1)


async def test_finish_happens_once(store: Store) -> None:
    job, _ = await store.add_job({"n": 1})
    await store.finish(job.id, "cancelled", error="by user")
    later = await store.finish(job.id, "succeeded", image_ids=["x"])
    assert later is not None and (later.status, later.image_ids) == ("cancelled", [])


async def test_a_data_dir_from_before_the_job_columns_keeps_working(tmp_path: Path) -> None:
    old = Store(sqlite_url(tmp_path))
    await old.init()
    job, _ = await old.add_job({"n": 1})
    await old.close()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:  # the jobs table as older versions made it
        for column in ("batch_key", "cancel_requested", "progress", "worker_id", "lease_expires_at", "attempt_workers"):
            db.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
        for table in ("alembic_version", "counters", "job_event_seqs", "job_events", "workers", "job_endings"):
            db.execute(f"DROP TABLE {table}")
    store = Store(sqlite_url(tmp_path))
    await store.init()
    try:
        row = await store.get_job(job.id)
        assert row is not None and (row.batch_key, row.cancel_requested, row.progress) == (None, False, None)
        claimed = await store.claim_next()
        assert claimed is not None and await store.claim_companions(claimed, 3) == []  # an old row runs alone
        assert await store.request_cancel(job.id) and await store.cancel_requested(job.id)
    finally:
        await store.close()
