"""The store's queue rules: order, priority, recovery after a crash, idempotency."""

from __future__ import annotations

import asyncio

import pytest

from cofounder_agent.jobs.store import QueueFull, Store


async def test_claims_by_priority_then_submission_order(store: Store) -> None:
    low, _ = await store.add_job({"n": 1})
    high, _ = await store.add_job({"n": 2}, priority=5)
    low2, _ = await store.add_job({"n": 3})
    assert await store.queue_position(high) == 0 and await store.queue_position(low2) == 2
    claimed = [await store.claim_next() for _ in range(3)]
    assert [job.id for job in claimed if job] == [high.id, low.id, low2.id]
    assert await store.claim_next() is None


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


async def test_a_job_cancelled_while_being_claimed_never_runs(store: Store) -> None:
    """Claim and cancel race: exactly one of them wins, every time."""
    for _ in range(30):
        job, _ = await store.add_job({"n": 1})
        claimed, cancelled = await asyncio.gather(
            store.claim_next(), store.cancel_if_queued(job.id, "cancelled before it started")
        )
        final = await store.get_job(job.id)
        assert final is not None
        if cancelled is not None:
            assert claimed is None and final.status == "cancelled"
        else:
            assert claimed is not None and claimed.id == job.id and final.status == "running"
            await store.finish(job.id, "succeeded")


async def test_release_requeues_without_using_the_retry(store: Store) -> None:
    job, _ = await store.add_job({"n": 1})
    await store.claim_next()
    await store.release(job.id)
    again = await store.claim_next()
    assert again is not None and again.id == job.id and again.attempts == 1
