"""The PostgreSQL event bus: each job's events in a table, numbered by the database, woken by NOTIFY.

Any process may publish a job's events (the API a ``queued``, a worker its steps) and any may
stream them: ``GET /v1/jobs/{id}/events`` works from every replica and resumes from
``Last-Event-ID``, because the numbers and the events live in the database.

Ordering: ``publish`` is synchronous (the engine's step callbacks call it), so it queues the
event and one writer task per process writes the queue in publishing order. Each event's number
comes from an upsert on its job's ``job_event_seqs`` row, which stays locked until the
transaction commits, so two processes publishing to one job are numbered in commit order,
without gaps, and NOTIFY (sent at commit, delivered in commit order) follows the same order.
A process's events keep their publishing order; between processes, commit order decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cofounder_agent.jobs import events as event_types
from cofounder_agent.jobs.bus import Delivered, LocalEventBus, Subscription
from cofounder_agent.jobs.events import JobEvent, Queued, Step
from cofounder_agent.jobs.pglisten import EVENTS_CHANNEL, POSITIONS_CHANNEL, PgListener
from cofounder_agent.jobs.ports import EventBus
from cofounder_agent.jobs.store import Store

log = logging.getLogger(__name__)

# Events written per transaction, at most.
BATCH = 200
# A backlog longer than this (the database is slow) drops superseded step events: a step
# followed by a newer step of the same job, with no other event of that job in between.
COALESCE_AFTER = 64
# How long a subscribe waits for this process's earlier events to be written.
FLUSH_S = 10.0
RETRY_S = 1.0

_KINDS: dict[str, type[JobEvent]] = {
    cls.__name__: cls
    for cls in vars(event_types).values()
    if isinstance(cls, type) and issubclass(cls, JobEvent) and cls is not JobEvent
}

_INSERT = text(
    """
    WITH n AS (
        INSERT INTO job_event_seqs (job_id, last) VALUES (:job_id, 1)
        ON CONFLICT (job_id) DO UPDATE SET last = job_event_seqs.last + 1
        RETURNING last
    )
    INSERT INTO job_events (job_id, seq, kind, payload, created_at)
    SELECT :job_id, n.last, :kind, CAST(:payload AS JSON), now() FROM n
    """
)
_NOTIFY = text("SELECT pg_notify(:channel, :job_id)")
_LAST = text("SELECT last FROM job_event_seqs WHERE job_id = :job_id")
_READ = text(
    "SELECT seq, kind, CAST(payload AS TEXT) FROM job_events"
    " WHERE job_id = :job_id AND seq > :after AND seq <= :upto ORDER BY seq"
)


def event_bus(store: Store) -> EventBus:
    """The bus that fits the store: in-process on SQLite, the database's on PostgreSQL."""
    if store.listener is None:
        return LocalEventBus()
    return PgEventBus(store.engine, store.listener, store.queued_positions)


def coalesce(events: list[JobEvent]) -> list[JobEvent]:
    """Drop each step event that a newer step of its job supersedes (no other event of the job between)."""
    kept: list[JobEvent] = []
    newer_step: set[str] = set()
    for event in reversed(events):
        if isinstance(event, Step):
            if event.job_id in newer_step:
                continue
            newer_step.add(event.job_id)
        else:
            newer_step.discard(event.job_id)
        kept.append(event)
    kept.reverse()
    return kept


# Queue positions of the given jobs that are still queued (Store.queued_positions).
Positions = Callable[[Collection[str]], Awaitable[dict[str, int]]]


class PgEventBus:
    """Events in ``job_events``; subscribers anywhere follow them through one LISTEN per process.

    With ``positions``, it also re-announces the queue places of the queued jobs followed in
    this process when any process says the queue moved (``POSITIONS_CHANNEL``): the worker
    that claimed a job has no subscribers of its own to tell.
    """

    def __init__(self, engine: AsyncEngine, listener: PgListener, positions: Positions | None = None) -> None:
        self._engine, self._listener, self._positions = engine, listener, positions
        self._moved = False  # the queue moved since the last announcement
        self._announcer: asyncio.Task[None] | None = None
        self._pending: deque[JobEvent] = deque()
        self._published = self._written = 0
        self._wrote = asyncio.Event()  # set after each written batch (flush waits on it)
        self._writer: asyncio.Task[None] | None = None
        self._subscribers: dict[str, set[Subscription]] = {}
        self._starting: set[Subscription] = set()  # reading their backlog: not fed yet
        self._dirty: set[str] = set()  # jobs notified since their last read
        self._reader: asyncio.Task[None] | None = None
        self._listening = False

    # --- publishing -----------------------------------------------------------------------

    def publish(self, event: JobEvent) -> None:
        """Queue the event for the writer (never blocks); numbered when it is written."""
        self._pending.append(event)
        self._published += 1
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name="event-writer")

    async def flush(self) -> None:
        """Return once every event published before the call is in the table."""
        target = self._published
        while self._written < target:
            self._wrote.clear()
            await self._wrote.wait()

    async def _write_loop(self) -> None:
        while self._pending:
            taken = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
            batch = coalesce(taken) if len(taken) + len(self._pending) > COALESCE_AFTER else taken
            while True:
                try:
                    await self._write(batch)
                    break
                except Exception:  # the database is away: keep the events and try again
                    log.exception("could not write %s job event(s); retrying", len(batch))
                    await asyncio.sleep(RETRY_S)
            self._written += len(taken)
            self._wrote.set()

    async def _write(self, batch: list[JobEvent]) -> None:
        async with self._engine.begin() as conn:
            for event in batch:
                payload = event.model_dump_json(exclude_unset=True)
                await conn.execute(_INSERT, {"job_id": event.job_id, "kind": type(event).__name__, "payload": payload})
            for job_id in dict.fromkeys(event.job_id for event in batch):
                await conn.execute(_NOTIFY, {"channel": EVENTS_CHANNEL, "job_id": job_id})

    # --- subscribing ----------------------------------------------------------------------

    async def subscribe(self, job_id: str, after: int | None = None) -> Subscription:
        """Listen to a job from now; with ``after``, first replay its stored events numbered above it.

        ``complete`` is False only for a number the job's stream never reached.
        """
        if not self._listening:
            self._listening = True
            try:
                await self._listener.listen(EVENTS_CHANNEL, self._notified)
                if self._positions is not None:
                    await self._listener.listen(POSITIONS_CHANNEL, self._queue_moved)
            except BaseException:
                self._listening = False
                raise
        with contextlib.suppress(TimeoutError):  # a database that is away: the replay may miss them
            async with asyncio.timeout(FLUSH_S):
                await self.flush()  # this process's earlier events are numbered and readable
        subscription = Subscription(self._unsubscribe, job_id, 0, [], True)
        self._subscribers.setdefault(job_id, set()).add(subscription)
        self._starting.add(subscription)
        try:
            async with self._engine.connect() as conn:
                last = int(await conn.scalar(_LAST, {"job_id": job_id}) or 0)
                replayed = await _read(conn, job_id, after, last) if after is not None and after < last else []
        except BaseException:
            self._unsubscribe(subscription)
            raise
        finally:
            self._starting.discard(subscription)
        subscription.last_seq = subscription.delivered = last
        subscription.complete = after is None or after <= last
        subscription.replayed = replayed
        # A notification read while the backlog was read may have skipped this subscription.
        self._notified(job_id)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.job_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.job_id]

    def subscribed(self) -> list[str]:
        """Jobs someone in this process listens to now."""
        return list(self._subscribers)

    def ended(self, job_id: str) -> None:
        """Nothing to drop: a job's events stay in the table, readable from every replica."""

    def _notified(self, job_id: str | None) -> None:
        """A job's stream grew (``None``: any may have, after a reconnect): read it for its subscribers."""
        jobs = [job_id] if job_id is not None else list(self._subscribers)
        self._dirty.update(job for job in jobs if job in self._subscribers)
        if self._dirty and (self._reader is None or self._reader.done()):
            self._reader = asyncio.get_running_loop().create_task(self._read_loop(), name="event-reader")

    def _queue_moved(self, _payload: str | None) -> None:
        """The queue moved (or the connection came back): announce this process's queued streams' places."""
        self._moved = True
        if self._subscribers and (self._announcer is None or self._announcer.done()):
            self._announcer = asyncio.get_running_loop().create_task(self._announce_loop(), name="queue-positions")

    async def _announce_loop(self) -> None:
        while self._moved and self._positions is not None:
            self._moved = False  # a move while this one is read makes one more pass
            try:
                positions = await self._positions(self.subscribed())
            except Exception:  # news for waiting streams; the next move tells them
                log.exception("could not read the queue positions")
                return
            for job_id, position in positions.items():
                self.publish(Queued(job_id=job_id, position=position))

    async def _read_loop(self) -> None:
        while self._dirty:
            job_id = self._dirty.pop()
            feeding = [s for s in self._subscribers.get(job_id, ()) if s not in self._starting]
            if not feeding:
                continue
            try:
                async with self._engine.connect() as conn:
                    upto = int(await conn.scalar(_LAST, {"job_id": job_id}) or 0)
                    items = await _read(conn, job_id, min(s.delivered for s in feeding), upto)
            except Exception:
                log.exception("could not read the events of job %s; retrying", job_id)
                self._dirty.add(job_id)
                await asyncio.sleep(RETRY_S)
                continue
            for subscription in list(self._subscribers.get(job_id, ())):
                if subscription not in self._starting:
                    for item in items:
                        subscription.put(item)  # each takes only what it has not had

    async def close(self) -> None:
        """Write what is queued (for a while), then stop the writer and the reader."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_S):
                await self.flush()
        for task in (self._announcer, self._writer, self._reader):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def _read(conn: Any, job_id: str, after: int, upto: int) -> list[Delivered]:
    rows = (await conn.execute(_READ, {"job_id": job_id, "after": after, "upto": upto})).all()
    return [Delivered(int(seq), _KINDS[kind].model_validate_json(payload)) for seq, kind, payload in rows]
