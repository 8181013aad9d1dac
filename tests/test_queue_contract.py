"""The job store/queue and event bus contract: one suite, run against every adapter.

"in-process": ``Store`` on SQLite and ``LocalEventBus``; "postgresql": ``Store`` on a real
PostgreSQL server and ``PgEventBus``. ``ports.replica()`` is a second API replica or worker on
the same database (in-process: the same objects, as one process owns its SQLite file), so the
cases about several replicas hold for both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cofounder_agent.contract.errors import IdempotencyKeyReused, QueueFull
from cofounder_agent.jobs import bus as bus_module
from cofounder_agent.jobs.bus import LocalEventBus
from cofounder_agent.jobs.ending import JobEnding
from cofounder_agent.jobs.events import CancelRequested, Progress, Queued, StageStarted, Step
from cofounder_agent.jobs.pgbus import PgEventBus, event_bus
from cofounder_agent.jobs.ports import EventBus, JobQueue
from cofounder_agent.jobs.recipe_book import RecipeBook
from cofounder_agent.jobs.service import JobService
from cofounder_agent.jobs.store import Store, sqlite_url
from cofounder_agent.jobs.tables import Base
from cofounder_agent.schemas.jobs import JobCreate
from cofounder_agent.storage import ImageStore
from conftest import make_settings

ADAPTERS = ["in-process", "postgresql"]


@dataclass
class Ports:
    queue: JobQueue
    bus: EventBus
    replica: Callable[[], Awaitable[Ports]]


@pytest.fixture(params=ADAPTERS)
async def ports(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ports]:
    opened: list[tuple[Store, EventBus]] = []

    async def replica() -> Ports:
        if request.param == "in-process" and opened:
            return Ports(*opened[0], replica)  # one process owns an SQLite file
        if request.param == "in-process":
            store = Store(sqlite_url(tmp_path))
            await store.init()
        elif request.param == "postgresql":
            store = Store(request.getfixturevalue("postgres_url"))
            async with store.engine.begin() as conn:  # migrations create them in a deployment
                await conn.run_sync(Base.metadata.create_all)
        else:  # pragma: no cover - a new adapter must say how it is built
            raise AssertionError(f"unknown adapter {request.param}")
        opened.append((store, event_bus(store)))
        return Ports(*opened[-1], replica)

    try:
        yield await replica()
    finally:
        for store, bus in opened:
            if isinstance(bus, PgEventBus):
                await bus.close()
            await store.close()


async def test_claims_by_priority_then_age(ports: Ports) -> None:
    q = ports.queue
    low, _ = await q.add_job({"n": 1})
    high, _ = await q.add_job({"n": 2}, priority=5)
    low2, _ = await q.add_job({"n": 3})
    assert await q.queue_position(high) == 0 and await q.queue_position(low2) == 2
    claimed = [await q.claim_next() for _ in range(3)]
    assert [job.id for job in claimed if job] == [high.id, low.id, low2.id]
    assert all(job is not None and job.status == "running" and job.attempts == 1 for job in claimed)
    assert await q.claim_next() is None


async def test_concurrent_submits_with_one_key_make_one_job(ports: Ports) -> None:
    made = await asyncio.gather(*(ports.queue.add_job({"n": n}, idempotency_key="same") for n in range(10)))
    assert len({job.id for job, _ in made}) == 1 and [new for _, new in made].count(True) == 1
    first = await ports.queue.claim_next()
    assert first is not None and await ports.queue.claim_next() is None


async def test_a_job_cancelled_before_its_claim_never_runs(ports: Ports) -> None:
    q = ports.queue
    job, _ = await q.add_job({"n": 1})
    cancelled = await q.cancel_if_queued(job.id, "cancelled before it started")
    assert cancelled is not None and (cancelled.status, cancelled.error) == ("cancelled", "cancelled before it started")
    assert await q.claim_next() is None
    assert await q.cancel_if_queued(job.id, "again") is None and not await q.request_cancel(job.id)


async def test_a_job_cancelled_while_being_claimed_never_runs(ports: Ports) -> None:
    """Claim and cancel race: exactly one of them wins, every time."""
    for _ in range(30):
        job, _ = await ports.queue.add_job({"n": 1})
        claimed, cancelled = await asyncio.gather(
            ports.queue.claim_next(), ports.queue.cancel_if_queued(job.id, "cancelled before it started")
        )
        final = await ports.queue.get_job(job.id)
        assert final is not None
        if cancelled is not None:
            assert claimed is None and final.status == "cancelled"
        else:
            assert claimed is not None and claimed.id == job.id and final.status == "running"
            await ports.queue.finish(job.id, "succeeded")


async def test_release_requeues_without_using_the_retry(ports: Ports) -> None:
    job, _ = await ports.queue.add_job({"n": 1})
    await ports.queue.claim_next()
    await ports.queue.release(job.id)
    again = await ports.queue.claim_next()
    assert again is not None and again.id == job.id and again.attempts == 1


async def test_a_cancel_while_running_is_a_flag_the_worker_reads(ports: Ports) -> None:
    q = ports.queue
    job, _ = await q.add_job({"n": 1})
    other, _ = await q.add_job({"n": 2})
    claimed = await q.claim_next()
    assert claimed is not None and claimed.id == job.id and not claimed.cancel_requested
    assert await q.cancel_if_queued(job.id, "too late") is None  # running: not cancelled at once
    assert await q.request_cancel(job.id)
    assert await q.cancel_requested(job.id) and not await q.cancel_requested(other.id)
    done = await q.finish(job.id, "cancelled", error="cancelled while running (base step 2)")
    assert done is not None and done.status == "cancelled"
    assert not await q.request_cancel(job.id)  # ended: nothing left to ask


async def test_a_cancel_flagged_before_the_claim_comes_with_it(ports: Ports) -> None:
    job, _ = await ports.queue.add_job({"n": 1})
    assert await ports.queue.request_cancel(job.id)
    claimed = await ports.queue.claim_next()
    assert claimed is not None and claimed.cancel_requested


async def test_positions_follow_the_claim_order(ports: Ports) -> None:
    q = ports.queue
    jobs = [(await q.add_job({"n": n}, priority=n % 2))[0] for n in range(5)]
    ids = [job.id for job in jobs]
    # Priority 1 first (jobs 1 and 3), then priority 0 by age (0, 2, 4).
    assert await q.queued_positions(ids) == {ids[1]: 0, ids[3]: 1, ids[0]: 2, ids[2]: 3, ids[4]: 4}
    assert [await q.queue_position(job) for job in jobs] == [2, 0, 3, 1, 4]
    await q.claim_next()
    assert await q.queued_positions(ids) == {ids[3]: 0, ids[0]: 1, ids[2]: 2, ids[4]: 3}


async def test_companions_share_the_batch_key_and_priority(ports: Ports) -> None:
    q = ports.queue
    first, _ = await q.add_job({"n": 1}, batch_key="k")
    mate, _ = await q.add_job({"n": 2}, batch_key="k")
    await q.add_job({"n": 3}, batch_key="other")
    await q.add_job({"n": 4}, batch_key="k", priority=-1)  # less urgent: never pulled ahead
    alone, _ = await q.add_job({"n": 5})
    mate2, _ = await q.add_job({"n": 6}, batch_key="k")
    claimed = await q.claim_next()
    assert claimed is not None and claimed.id == first.id
    assert [job.id for job in await q.claim_companions(claimed, 1)] == [mate.id]
    assert [job.id for job in await q.claim_companions(claimed, 5)] == [mate2.id]
    assert await q.claim_companions(claimed, 5) == []
    other = await q.claim_next()  # "other" is next by age, then the job without a key
    assert other is not None and await q.claim_companions(other, 5) == []
    solo = await q.claim_next()
    assert solo is not None and solo.id == alone.id and await q.claim_companions(solo, 5) == []


async def test_a_submit_wakes_a_waiting_worker(ports: Ports) -> None:
    q = ports.queue
    await q.wait_for_work(0.01)  # nothing queued: returns at its timeout
    waiter = asyncio.create_task(q.wait_for_work(600))
    await asyncio.sleep(0)
    await q.add_job({"n": 1})
    async with asyncio.timeout(60):
        await waiter


async def test_progress_is_recorded_for_running_jobs_only(ports: Ports) -> None:
    q = ports.queue
    job, _ = await q.add_job({"n": 1})
    await q.set_progress(job.id, None, Progress(stage="base", step=1, total=4, progress=0.25))
    assert (await q.get_job(job.id)).progress is None  # type: ignore[union-attr]
    await q.claim_next()
    await q.set_progress(job.id, None, Progress(stage="base", step=2, total=4, progress=0.5, eta_s=1.5))
    row = await q.get_job(job.id)
    assert row is not None and Progress.model_validate(row.progress) == Progress(
        stage="base", step=2, total=4, progress=0.5, eta_s=1.5
    )


def _step(job_id: str, n: int) -> Step:
    return Step(job_id=job_id, stage="base", step=n, total=9, progress=n / 9, eta_s=None)


async def test_events_are_numbered_per_job_and_replayed_after_a_number(ports: Ports) -> None:
    bus = ports.bus
    for n in range(1, 6):
        bus.publish(_step("a", n))
    bus.publish(_step("b", 1))
    with await bus.subscribe("b", after=0) as other:  # each job counts on its own
        assert [(d.seq, d.event) for d in other.replayed] == [(1, _step("b", 1))] and other.last_seq == 1
    with await bus.subscribe("a", after=2) as resumed, await bus.subscribe("a") as fresh:
        assert resumed.complete and [(d.seq, d.event) for d in resumed.replayed] == [
            (n, _step("a", n)) for n in (3, 4, 5)
        ]
        assert fresh.replayed == [] and fresh.last_seq == 5
        bus.publish(Queued(job_id="a", position=0))
        for subscription in (resumed, fresh):
            async with asyncio.timeout(60):
                delivered = await subscription.get()
            assert (delivered.seq, delivered.event) == (6, Queued(job_id="a", position=0))
        assert "a" in bus.subscribed()
    assert "a" not in bus.subscribed()
    with await bus.subscribe("a", after=99) as ahead:  # a number this stream never had: not resumable
        assert not ahead.complete and ahead.replayed == []


# --- several replicas on one database -------------------------------------------------------


async def test_one_key_submitted_to_two_replicas_at_once_makes_one_job(ports: Ports) -> None:
    other = await ports.replica()
    queues = [ports.queue, other.queue]
    made = await asyncio.gather(*(queues[n % 2].add_job({"n": n}, idempotency_key="twice") for n in range(10)))
    assert len({job.id for job, _ in made}) == 1 and [new for _, new in made].count(True) == 1
    assert await other.queue.claim_next() is not None and await ports.queue.claim_next() is None


async def test_the_queue_limit_holds_across_replicas(ports: Ports) -> None:
    other = await ports.replica()
    queues = [ports.queue, other.queue]
    made = await asyncio.gather(
        *(queues[n % 2].add_job({"n": n}, max_queued=3) for n in range(12)), return_exceptions=True
    )
    assert sum(isinstance(result, QueueFull) for result in made) == 9
    assert len({result[0].id for result in made if isinstance(result, tuple)}) == 3
    claimed = await ports.queue.claim_next()  # a slot frees up: one more fits, then it is full again
    assert claimed is not None
    await other.queue.add_job({"n": 99}, max_queued=3)
    with pytest.raises(QueueFull):
        await ports.queue.add_job({"n": 100}, max_queued=3)


async def test_two_replicas_claiming_at_once_never_share_a_job(ports: Ports) -> None:
    other = await ports.replica()
    jobs = [(await ports.queue.add_job({"n": n}, priority=n % 3))[0] for n in range(24)]
    queues = [ports.queue, other.queue]
    claimed = await asyncio.gather(*(queues[n % 2].claim_next() for n in range(32)))
    ids = [job.id for job in claimed if job is not None]
    assert sorted(ids) == sorted(job.id for job in jobs)  # every job exactly once, none twice
    assert all(job is None or job.attempts == 1 for job in claimed)


async def test_two_replicas_gathering_companions_never_share_one(ports: Ports) -> None:
    other = await ports.replica()
    first, _ = await ports.queue.add_job({"n": 0}, batch_key="k")
    second, _ = await ports.queue.add_job({"n": 1}, batch_key="k")
    mates = [(await ports.queue.add_job({"n": n}, batch_key="k"))[0] for n in range(2, 12)]
    lead_a, lead_b = await ports.queue.claim_next(), await other.queue.claim_next()
    assert lead_a is not None and lead_b is not None and {lead_a.id, lead_b.id} == {first.id, second.id}
    found = await asyncio.gather(
        *(q.claim_companions(lead, 3) for q, lead in [(ports.queue, lead_a), (other.queue, lead_b)] * 3)
    )
    ids = [job.id for batch in found for job in batch]
    assert len(ids) == len(set(ids)) and all(len(batch) <= 3 for batch in found)  # none twice
    for batch in found:
        assert [job.seq for job in batch] == sorted(job.seq for job in batch)  # oldest first
    while rest := await other.queue.claim_companions(lead_b, 3):  # a lost race leaves a mate queued
        ids += [job.id for job in rest]
    assert sorted(ids) == sorted(job.id for job in mates)


async def test_a_submit_on_one_replica_wakes_a_worker_on_another(ports: Ports) -> None:
    worker = await ports.replica()
    await worker.queue.wait_for_work(0.01)
    assert await worker.queue.claim_next() is None
    waiter = asyncio.create_task(worker.queue.wait_for_work(600))
    await asyncio.sleep(0)
    await ports.queue.add_job({"n": 1})
    async with asyncio.timeout(60):
        await waiter
    assert await worker.queue.claim_next() is not None


async def test_a_cancel_asked_on_one_replica_reaches_the_worker_on_another(ports: Ports) -> None:
    worker = await ports.replica()
    job, _ = await ports.queue.add_job({"n": 1})
    assert await worker.queue.claim_next() is not None
    with await worker.bus.subscribe(job.id) as watching:
        assert await ports.queue.request_cancel(job.id)
        ports.bus.publish(CancelRequested(job_id=job.id))
        async with asyncio.timeout(60):
            assert isinstance((await watching.get()).event, CancelRequested)
    assert await worker.queue.cancel_requested(job.id)


async def test_a_claim_on_a_worker_moves_the_queue_places_streamed_by_another_replica(
    ports: Ports, tmp_path: Path
) -> None:
    """The worker that claims announces; the replica that streams the waiting job tells it (PostgreSQL: NOTIFY)."""
    api, worker = ports, await ports.replica()
    first, _ = await api.queue.add_job({"n": 1})
    second, _ = await api.queue.add_job({"n": 2})
    with await api.bus.subscribe(second.id) as waiting:
        claimed = await worker.queue.claim_next("w1")
        assert claimed is not None and claimed.id == first.id
        assert isinstance(worker.queue, Store)
        await JobEnding(worker.queue, worker.bus, ImageStore(tmp_path / "images")).announce_positions()
        async with asyncio.timeout(60):
            while (event := (await waiting.get()).event) != Queued(job_id=second.id, position=0):
                assert isinstance(event, Queued), event


async def test_events_published_on_two_replicas_reach_a_third_in_order(ports: Ports) -> None:
    """Two publishers on one job (the API and a worker), a stream on another replica: no gaps."""
    api, worker = ports, await ports.replica()
    stream = await ports.replica()
    with await stream.bus.subscribe("j", after=0) as follow:
        for n in range(1, 31):
            worker.bus.publish(_step("j", n))
            if n % 10 == 0:
                api.bus.publish(StageStarted(job_id="j", stage=f"s{n}", total=n))
        got = []
        async with asyncio.timeout(120):
            while len(got) < 33:
                got.append(await follow.get())
    assert [d.seq for d in got] == list(range(1, 34))
    steps = [d.event for d in got if isinstance(d.event, Step)]
    assert steps == [_step("j", n) for n in range(1, 31)]  # each publisher's order kept
    with await api.bus.subscribe("j", after=30) as resumed:  # Last-Event-ID on yet another replica
        assert resumed.complete and [d.seq for d in resumed.replayed] == [31, 32, 33]
        assert [d.event for d in resumed.replayed] == [d.event for d in got[30:]]


async def test_the_in_process_bus_says_when_a_replay_is_older_than_its_log(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not a contract case: the bounded log is the in-process adapter's (the database keeps all).
    monkeypatch.setattr(bus_module, "REPLAY_EVENTS", 3)
    bus = LocalEventBus()
    for n in range(1, 7):
        bus.publish(_step("c", n))
    with await bus.subscribe("c", after=1) as old, await bus.subscribe("c", after=3) as recent:
        assert not old.complete and old.replayed == []
        assert recent.complete and [d.seq for d in recent.replayed] == [4, 5, 6]


async def test_a_key_reused_with_another_request_is_refused(ports: Ports, tmp_path: Path) -> None:
    store = ports.queue
    assert isinstance(store, Store)
    files = ImageStore(tmp_path / "images")
    settings = make_settings(tmp_path)
    service = JobService(store, ports.bus, JobEnding(store, ports.bus, files), settings, RecipeBook(tmp_path / "r"))
    first, new = await service.submit(JobCreate(prompt="a"), "k")
    again, new_again = await service.submit(JobCreate(prompt="a"), "k")
    assert new and not new_again and again.id == first.id
    with pytest.raises(IdempotencyKeyReused) as refused:
        await service.submit(JobCreate(prompt="b"), "k")
    assert refused.value.job_id == first.id and refused.value.code == "idempotency_key_reused"
    # Racing requests with one key, half of them another request: one job; its request's
    # submits get it, the others are refused (also when the insert, not the look, finds the key).
    bodies = [JobCreate(prompt="x"), JobCreate(prompt="y")] * 5
    made = await asyncio.gather(*(service.submit(body, "race") for body in bodies), return_exceptions=True)
    jobs = [result[0] for result in made if not isinstance(result, BaseException)]
    refusals = [result for result in made if isinstance(result, BaseException)]
    assert len({job.id for job in jobs}) == 1 and len(jobs) == 5
    assert all(isinstance(error, IdempotencyKeyReused) for error in refusals) and len(refusals) == 5
    # A job stored before the request hash existed keeps the old behaviour: the key alone finds it.
    legacy, _ = await store.add_job({"prompt": "old"}, idempotency_key="old-key")
    assert legacy.request_hash is None
    found, new = await service.submit(JobCreate(prompt="anything"), "old-key")
    assert found.id == legacy.id and not new
