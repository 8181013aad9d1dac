"""Leases, fencing, reaping and the workers table: the queue contract's part that keeps time.

Run on every adapter through test_queue_contract's ``ports`` fixture. The clock is driven by
writing a lease (or heartbeat) into the past on the database's own clock, never by sleeping,
except in the one case that shows a short lease running out by itself.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import update

import test_queue_contract
from cofounder_agent.jobs.events import Progress
from cofounder_agent.jobs.ports import JobQueue
from cofounder_agent.jobs.store import MAX_ATTEMPTS, Store
from cofounder_agent.jobs.tables import JobRow, WorkerRow
from test_queue_contract import Ports

ports = test_queue_contract.ports  # the adapters' fixture, shared with the queue contract

WORKER = {"host": "gpu-host", "pid": 4242, "device": "cuda:0", "model": "tiny", "precision": "fp16"}


def _store(queue: JobQueue) -> Store:
    assert isinstance(queue, Store)  # every adapter of the queue is a Store on some database
    return queue


async def _expire(queue: JobQueue, *job_ids: str) -> None:
    """Move these jobs' leases an hour into the past, on the database's clock."""
    store = _store(queue)
    async with store.session() as s, s.begin():
        await s.execute(update(JobRow).where(JobRow.id.in_(job_ids)).values(lease_expires_at=store.db_time(-3600)))


async def _job(queue: JobQueue, job_id: str) -> JobRow:
    row = await queue.get_job(job_id)
    assert row is not None
    return row


async def test_an_expired_lease_is_requeued_once_then_fails_with_the_reason(ports: Ports) -> None:
    q = ports.queue
    job, _ = await q.add_job({"n": 1})
    assert await q.claim_next("w1") is not None
    assert await q.reap() == ([], [])  # a lease still running is left alone
    await _expire(q, job.id)
    assert await q.reap() == ([job.id], [])
    again = await _job(q, job.id)
    assert (again.status, again.attempts, again.worker_id == "w1") == ("queued", 1, True)
    claimed = await q.claim_next("w2")
    assert claimed is not None and claimed.attempts == MAX_ATTEMPTS == 2
    await _expire(q, job.id)
    assert await q.reap() == ([], [job.id])
    failed = await _job(q, job.id)
    assert failed.status == "failed" and failed.finished_at is not None
    assert failed.error == "its worker stopped renewing its lease 2 times; not retried again"
    assert failed.attempt_workers == ["w1", "w2"]
    assert await q.reap() == ([], [])


async def test_a_worker_that_lost_its_lease_cannot_finish_the_job(ports: Ports) -> None:
    q = ports.queue
    job, _ = await q.add_job({"n": 1})
    await q.claim_next("w1")
    await _expire(q, job.id)
    await q.reap()
    # Reaped and not yet claimed again: the old worker's end changes nothing.
    assert await q.finish(job.id, "succeeded", image_ids=["a"], worker_id="w1") is None
    assert (await _job(q, job.id)).status == "queued"
    assert await q.claim_next("w2") is not None
    # Claimed by another: the old worker can neither finish, renew nor give it back.
    assert await q.finish(job.id, "failed", error="late", worker_id="w1") is None
    assert await q.renew("w1", [job.id]) == set()
    await q.release(job.id, "w1")
    running = await _job(q, job.id)
    assert (running.status, running.worker_id, running.image_ids) == ("running", "w2", [])
    done = await q.finish(job.id, "succeeded", image_ids=["b"], worker_id="w2")
    assert done is not None and (done.status, done.image_ids, done.error) == ("succeeded", ["b"], None)
    assert (await _job(q, job.id)).attempt_workers == ["w1", "w2"]


async def test_a_worker_without_the_lease_cannot_write_the_progress(ports: Ports) -> None:
    q = ports.queue
    job, _ = await q.add_job({"n": 1})
    await q.claim_next("w1")
    await _expire(q, job.id)
    await q.reap()
    assert await q.claim_next("w2") is not None
    # The old worker's late progress is ignored; the lease holder's is written.
    await q.set_progress(job.id, "w1", Progress(stage="base", step=9, total=10, progress=0.9))
    assert (await _job(q, job.id)).progress is None
    await q.set_progress(job.id, "w2", Progress(stage="base", step=1, total=10, progress=0.1))
    assert (await _job(q, job.id)).progress == Progress(stage="base", step=1, total=10, progress=0.1).model_dump()


async def test_renewal_keeps_the_job_with_its_worker(ports: Ports) -> None:
    q = ports.queue
    kept, _ = await q.add_job({"n": 1})
    other, _ = await q.add_job({"n": 2})
    await q.claim_next("w1")
    await q.claim_next("w2")
    await _expire(q, kept.id, other.id)
    assert await q.renew("w1", [kept.id, other.id]) == {kept.id}  # only its own
    assert await q.reap() == ([other.id], [])
    running = await _job(q, kept.id)
    assert (running.status, running.worker_id, running.attempts) == ("running", "w1", 1)


async def test_a_short_lease_runs_out_on_the_database_clock(ports: Ports) -> None:
    q = ports.queue
    _store(q).lease_s = 1.0
    job, _ = await q.add_job({"n": 1})
    await q.claim_next("w1")
    async with asyncio.timeout(120):  # a generous outer limit; the lease itself is one second
        while True:
            if await q.reap() == ([job.id], []):
                break
            await asyncio.sleep(0.2)
    assert (await _job(q, job.id)).status == "queued"


async def test_concurrent_reapers_requeue_each_job_once(ports: Ports) -> None:
    other = await ports.replica()
    jobs = [(await ports.queue.add_job({"n": n}))[0] for n in range(6)]
    for _ in jobs:
        await ports.queue.claim_next("w1")
    await _expire(ports.queue, *(job.id for job in jobs))
    reaped = await asyncio.gather(*(reaper.reap() for reaper in (ports.queue, other.queue) * 3))
    assert sorted(job_id for ids, _ in reaped for job_id in ids) == sorted(job.id for job in jobs)  # each once
    assert [failed for _, failed in reaped] == [[]] * 6
    assert [(await _job(ports.queue, job.id)).attempts for job in jobs] == [1] * 6


async def test_the_workers_table_lists_live_workers_and_drops_silent_ones(ports: Ports) -> None:
    q = ports.queue
    await q.register_worker("w1", **WORKER, ready=False)
    await q.register_worker("w2", **{**WORKER, "device": "cuda:1"}, ready=True)
    assert [w.id for w in await q.live_workers(60)] == ["w1", "w2"]
    assert await q.heartbeat("w1", ready=True, job_ids={"j1"})
    store = _store(q)
    async with store.session() as s, s.begin():  # w2 stopped beating ten minutes ago
        await s.execute(update(WorkerRow).where(WorkerRow.id == "w2").values(heartbeat_at=store.db_time(-600)))
    live = await q.live_workers(60)
    assert [(w.id, w.device, w.model, w.precision, w.ready, w.current_job_ids) for w in live] == [
        ("w1", "cuda:0", "tiny", "fp16", True, ["j1"])
    ]
    assert [w.id for w in await q.live_workers(3600)] == ["w1", "w2"]
    await q.deregister("w1")
    assert not await q.heartbeat("w1", ready=True, job_ids=())
    assert await q.live_workers(60) == []
