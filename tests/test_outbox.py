"""The job-end outbox: one row per end, written with it; each end's hooks run once across replicas.

Run on SQLite and on a real PostgreSQL server. Two ``Store`` instances on one database stand
for two replicas (each with its own connections and, on PostgreSQL, its own LISTEN).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, update

from cofounder_agent.jobs import outbox
from cofounder_agent.jobs.outbox import EndingDispatcher
from cofounder_agent.jobs.outbox_rows import PRUNE_LOCK
from cofounder_agent.jobs.store import MAX_ATTEMPTS, Store, sqlite_url
from cofounder_agent.jobs.tables import Base, EventRow, JobEndingRow, JobRow

BACKENDS = ["sqlite", "postgresql"]
LIMIT_S = 60.0

Replica = Callable[[], Awaitable[Store]]


@pytest.fixture(params=BACKENDS)
async def replica(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Replica]:
    """Open another store on the test's database (the first call makes the schema)."""
    opened: list[Store] = []

    async def open_one() -> Store:
        if request.param == "sqlite":
            store = Store(sqlite_url(tmp_path))
            await store.init()
        else:
            store = Store(request.getfixturevalue("postgres_url"))
            async with store.engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
        opened.append(store)
        return store

    try:
        yield open_one
    finally:
        for store in opened:
            await store.close()


async def _endings(store: Store) -> Counter[str]:
    """How many outbox rows each job has."""
    async with store.session() as s:
        return Counter((await s.scalars(select(JobEndingRow.job_id))).all())


async def _undelivered(store: Store) -> int:
    async with store.session() as s:
        return await s.scalar(select(func.count()).where(JobEndingRow.delivered_at.is_(None))) or 0


async def _ended(store: Store, n: int) -> list[str]:
    """Queue, claim and finish ``n`` jobs; return their ids."""
    ids = []
    for number in range(n):
        job, _ = await store.add_job({"n": number})
        assert await store.claim_next("w1") is not None
        assert await store.finish(job.id, "succeeded", worker_id="w1") is not None
        ids.append(job.id)
    return ids


async def _eventually(check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + LIMIT_S
    while not await check():
        assert time.monotonic() < deadline, "not within the limit"
        await asyncio.sleep(0.02)


async def _expire(store: Store, job_id: str) -> None:
    async with store.session() as s, s.begin():
        await s.execute(update(JobRow).where(JobRow.id == job_id).values(lease_expires_at=store.db_time(-3600)))


# --- writing ---------------------------------------------------------------------------------


async def test_every_way_a_job_ends_writes_exactly_one_row(replica: Replica) -> None:
    store = await replica()
    # The worker's finish: once, and not again when finished twice or by a worker without the lease.
    (finished,) = await _ended(store, 1)
    assert await store.finish(finished, "failed", error="again") is not None  # already ended: unchanged
    fenced, _ = await store.add_job({"n": "fenced"})
    await store.claim_next("w1")
    assert await store.finish(fenced.id, "succeeded", worker_id="w2") is None
    # A cancel before the claim; a second cancel finds nothing queued.
    cancelled, _ = await store.add_job({"n": "cancelled"})
    assert await store.cancel_if_queued(cancelled.id, "no") is not None
    assert await store.cancel_if_queued(cancelled.id, "no") is None
    # Reaped: re-queued first (no end), failed after the last attempt.
    reaped = fenced
    await _expire(store, reaped.id)
    assert await store.reap() == ([reaped.id], [])
    assert await store.claim_next("w2") is not None
    await _expire(store, reaped.id)
    assert await store.reap() == ([], [reaped.id])
    # Recovered at a start: the same.
    recovered, _ = await store.add_job({"n": "recovered"})
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert await store.claim_next() is not None
        assert await store.recover() == (([recovered.id], []) if attempt < MAX_ATTEMPTS else ([], [recovered.id]))
    assert await _endings(store) == Counter({finished: 1, cancelled.id: 1, reaped.id: 1, recovered.id: 1})


async def test_the_row_commits_with_the_end_or_not_at_all(replica: Replica, monkeypatch: pytest.MonkeyPatch) -> None:
    store, other = await replica(), await replica()
    job, _ = await store.add_job({"n": 1})
    await store.claim_next("w1")

    async def refused(*_args: object) -> None:
        raise RuntimeError("the outbox insert failed")

    with monkeypatch.context() as patch:
        patch.setattr(store, "record_endings", refused)
        with pytest.raises(RuntimeError):
            await store.finish(job.id, "succeeded", worker_id="w1")
    running = await store.get_job(job.id)
    assert running is not None and running.status == "running"  # the end rolled back with the row
    # Two replicas finishing at once: one end, one row.
    done = await asyncio.gather(store.finish(job.id, "succeeded"), other.finish(job.id, "failed", error="x"))
    assert {row.status for row in done if row is not None} == {(await store.get_job(job.id)).status}  # type: ignore[union-attr]
    assert await _endings(store) == Counter({job.id: 1})


# --- delivering ------------------------------------------------------------------------------


async def test_two_dispatchers_deliver_each_end_once(replica: Replica) -> None:
    one, two = await replica(), await replica()
    seen: Counter[str] = Counter()

    async def count(job: JobRow) -> None:
        seen[job.id] += 1
        await asyncio.sleep(0)  # let the other dispatcher run meanwhile

    ids = [*await _ended(one, 10), *await _ended(two, 10)]
    dispatchers = [EndingDispatcher(store, [count]) for store in (one, two)]
    for dispatcher in dispatchers:
        dispatcher.start()
    try:
        await _eventually(lambda: _is_zero(_undelivered(one)))
    finally:
        for dispatcher in dispatchers:
            await dispatcher.stop()
    assert seen == Counter(dict.fromkeys(ids, 1))


async def _is_zero(count: Awaitable[int]) -> bool:
    return await count == 0


async def test_an_end_wakes_a_waiting_dispatcher(replica: Replica) -> None:
    """No poll: the notification (PostgreSQL, from another replica) or the in-process signal wakes it."""
    api = await replica()
    # SQLite: one process owns the file, so its own worker ends the job; PostgreSQL: another replica.
    worker = api if not api.postgres else await replica()
    seen: list[str] = []

    async def record(job: JobRow) -> None:
        seen.append(job.id)

    dispatcher = EndingDispatcher(api, [record], poll_s=3600)
    dispatcher.start()
    try:
        # Whenever it comes: an end before the dispatcher listens is found by the look that follows its LISTEN.
        ids = await _ended(worker, 1)
        await _eventually(lambda: _equal(seen, ids))
    finally:
        await dispatcher.stop()


async def _equal(seen: list[str], expected: list[str]) -> bool:
    return seen == expected


async def test_a_dispatcher_that_died_mid_delivery_is_taken_over(replica: Replica) -> None:
    one, two = await replica(), await replica()
    started, finished = Counter[str](), Counter[str]()
    hang = asyncio.Event()  # never set: the first dispatcher dies inside its hook

    async def hanging(job: JobRow) -> None:
        started[job.id] += 1
        await hang.wait()

    async def count(job: JobRow) -> None:
        finished[job.id] += 1

    (job_id,) = await _ended(one, 1)
    dying = EndingDispatcher(one, [hanging], claim_s=0.5)
    delivering = asyncio.create_task(dying.deliver_due())
    await _eventually(lambda: _equal(list(started), [job_id]))
    delivering.cancel()  # the process died: its claim stays on the row, undelivered
    taker = EndingDispatcher(two, [count])
    await _eventually(lambda: _is_positive(taker.deliver_due()))
    assert finished == Counter({job_id: 1}) and await _undelivered(one) == 0
    async with one.session() as s:
        row = (await s.scalars(select(JobEndingRow))).one()
    assert (row.claimed_by, row.attempts) == (taker.id, 2)


async def _is_positive(count: Awaitable[int]) -> bool:
    return await count > 0


async def test_a_failing_hook_neither_stops_the_others_nor_comes_back(replica: Replica) -> None:
    store = await replica()
    calls: Counter[str] = Counter()

    async def broken(_job: JobRow) -> None:
        calls["broken"] += 1
        raise RuntimeError("the hook broke")

    async def stuck(_job: JobRow) -> None:
        calls["stuck"] += 1
        await asyncio.Event().wait()

    async def count(_job: JobRow) -> None:
        calls["count"] += 1

    await _ended(store, 2)
    dispatcher = EndingDispatcher(store, [broken, stuck, count], hook_timeout_s=0.2)
    assert await dispatcher.deliver_due() == 2
    # Each hook ran once per end; the ends are delivered and not tried again (no redelivery).
    assert calls == Counter({"broken": 2, "stuck": 2, "count": 2})
    assert await _undelivered(store) == 0 and await dispatcher.deliver_due() == 0


# --- pruning ---------------------------------------------------------------------------------


async def test_pruning_drops_old_events_and_delivered_rows_only(replica: Replica) -> None:
    store = await replica()
    old, recent = await _ended(store, 2)
    running, _ = await store.add_job({"n": "running"})
    await store.claim_next("w1")
    async with store.session() as s, s.begin():
        await s.execute(
            update(JobRow).where(JobRow.id == old).values(finished_at=store.db_time(-2 * outbox.EVENTS_KEPT_S))
        )
        for job_id in (old, recent, running.id):
            rows = [{"job_id": job_id, "seq": seq, "kind": "Queued", "payload": {}} for seq in (1, 2)]
            await s.execute(insert(EventRow).values(rows))
    assert await EndingDispatcher(store, []).deliver_due() == 2
    async with store.session() as s, s.begin():  # the old end delivered two days ago
        long_ago = store.db_time(-2 * outbox.DELIVERED_KEPT_S)
        await s.execute(update(JobEndingRow).where(JobEndingRow.job_id == old).values(delivered_at=long_ago))
    cancelled, _ = await store.add_job({"n": "undelivered"})
    await store.cancel_if_queued(cancelled.id, "no")
    assert await store.prune_outbox(outbox.EVENTS_KEPT_S, outbox.DELIVERED_KEPT_S) == (2, 1)
    async with store.session() as s:
        kept_events = Counter((await s.scalars(select(EventRow.job_id))).all())
    assert kept_events == Counter({recent: 2, running.id: 2})
    assert await _endings(store) == Counter({recent: 1, cancelled.id: 1})  # the undelivered one stays
    assert await store.prune_outbox(outbox.EVENTS_KEPT_S, outbox.DELIVERED_KEPT_S) == (0, 0)


async def test_one_replica_prunes_at_a_time(replica: Replica) -> None:
    """PostgreSQL: under an advisory lock, so replicas do not delete the same rows at once (SQLite: one process)."""
    store, other = await replica(), await replica()
    if store.postgres:
        async with store.session() as s, s.begin():
            assert await s.scalar(select(func.pg_try_advisory_xact_lock(PRUNE_LOCK)))
            assert await other.prune_outbox(outbox.EVENTS_KEPT_S, outbox.DELIVERED_KEPT_S) is None
    assert await other.prune_outbox(outbox.EVENTS_KEPT_S, outbox.DELIVERED_KEPT_S) == (0, 0)
