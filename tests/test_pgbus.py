"""The PostgreSQL bus's own promise beyond the contract: a backlog drops superseded steps only."""

from __future__ import annotations

import asyncio

from cofounder_agent.jobs.events import JobEvent, StageStarted, Step
from cofounder_agent.jobs.pgbus import COALESCE_AFTER, PgEventBus, coalesce
from cofounder_agent.jobs.store import Store
from cofounder_agent.jobs.tables import Base


def _step(job_id: str, n: int) -> Step:
    return Step(job_id=job_id, stage="base", step=n, total=99, progress=n / 99, eta_s=None)


def test_coalescing_keeps_the_latest_step_of_each_run_and_every_other_event() -> None:
    stage = StageStarted(job_id="a", stage="refiner", total=3)
    events: list[JobEvent] = [_step("a", 1), _step("b", 1), _step("a", 2), stage, _step("a", 3), _step("b", 2)]
    assert coalesce(events) == [_step("a", 2), stage, _step("a", 3), _step("b", 2)]


async def test_a_backlog_is_coalesced_and_still_numbered_without_gaps(postgres_url: str) -> None:
    store = Store(postgres_url)
    async with store.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    assert store.listener is not None
    bus = PgEventBus(store.engine, store.listener)
    try:
        published: list[JobEvent] = []
        for n in range(1, COALESCE_AFTER * 2):  # published at once: the writer finds a long backlog
            published.append(_step("j", n))
            if n % 25 == 0:
                published.append(StageStarted(job_id="j", stage=f"s{n}", total=n))
        for event in published:
            bus.publish(event)
        async with asyncio.timeout(120):
            await bus.flush()
        with await bus.subscribe("j", after=0) as stream:
            stored = [d.event for d in stream.replayed]
            assert [d.seq for d in stream.replayed] == list(range(1, len(stored) + 1))
        assert stored == coalesce(published) and len(stored) < len(published)
    finally:
        await bus.close()
        await store.close()
