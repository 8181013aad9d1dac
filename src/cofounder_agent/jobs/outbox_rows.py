"""The job-end outbox's rows: written with each job's end, claimed and marked by a dispatcher; part of ``Store``.

A job's end and its ``job_endings`` row commit together (``record_endings`` runs in the
transaction that ends the job), so no end is lost between the two and none is recorded twice.
Dispatchers in any number of processes claim rows with a claim on the database's clock
(``SKIP LOCKED`` on PostgreSQL, one conditional UPDATE on SQLite); a claim whose dispatcher
died lapses and is taken again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cofounder_agent.jobs.pglisten import ENDINGS_CHANNEL, PgListener
from cofounder_agent.jobs.tables import EventRow, JobEndingRow, JobRow, utcnow

# The advisory lock (see store.QUEUE_LOCK) that lets one replica at a time prune.
PRUNE_LOCK = 0x636F_6661_0002


class OutboxRows:
    """Recording, claiming, marking and pruning the outbox; part of ``Store``."""

    session: async_sessionmaker[AsyncSession]
    postgres: bool
    _listener: PgListener | None
    # Set after a commit that recorded an ending (this process's dispatcher need not wait for its poll).
    _ended: asyncio.Event
    _listening_endings: bool

    db_time: Callable[..., ColumnElement[Any]]  # Leases (offset_s)
    db_before: Callable[..., ColumnElement[bool]]  # Leases (column, offset_s)

    async def record_endings(self, s: AsyncSession, job_ids: Collection[str]) -> None:
        """Add an outbox row per ended job in ``s``'s transaction; dispatchers are told at its commit.

        The caller calls ``endings_recorded()`` after the commit (this process's dispatcher).
        """
        if not job_ids:
            return
        now = utcnow()
        await s.execute(insert(JobEndingRow).values([{"job_id": job_id, "created_at": now} for job_id in job_ids]))
        if self.postgres:  # sent at commit: other processes' dispatchers read a committed row
            await s.execute(select(func.pg_notify(ENDINGS_CHANNEL, "")))

    def endings_recorded(self) -> None:
        """Wake this process's dispatcher (after a commit that recorded an ending)."""
        self._ended.set()

    async def wait_for_endings(self, timeout_s: float) -> None:
        """Return when an ending may have been recorded since the last call (or after ``timeout_s``)."""
        if self._listener is not None and not self._listening_endings:
            self._listening_endings = True
            try:
                await self._listener.listen(ENDINGS_CHANNEL, self._endings_notified)
            except BaseException:
                self._listening_endings = False
                raise
            return  # an ending before the LISTEN began was not heard: look at the outbox again
        try:
            async with asyncio.timeout(timeout_s):
                await self._ended.wait()
        except TimeoutError:
            return
        self._ended.clear()

    def _endings_notified(self, _payload: str | None) -> None:
        self._ended.set()

    async def claim_endings(self, owner: str, claim_s: float, limit: int = 1) -> list[tuple[int, str]]:
        """Claim up to ``limit`` undelivered endings for ``claim_s`` seconds; return (row id, job id) pairs.

        A row is free when nobody claimed it or its claim lapsed (its dispatcher died or hung).
        """
        due = (JobEndingRow.delivered_at.is_(None)) & (
            JobEndingRow.claimed_until.is_(None) | self.db_before(JobEndingRow.claimed_until, 0.0)
        )
        free = select(JobEndingRow.id).where(due).order_by(JobEndingRow.id).limit(limit)
        if self.postgres:  # a row another dispatcher is claiming is passed over, not waited for
            free = free.with_for_update(skip_locked=True)
        claim = (
            update(JobEndingRow)
            # ``due`` again: SQLite re-reads under its write lock, PostgreSQL re-checks a changed row.
            .where(JobEndingRow.id.in_(free.scalar_subquery()), due)
            .values(claimed_by=owner, claimed_until=self.db_time(claim_s), attempts=JobEndingRow.attempts + 1)
            .returning(JobEndingRow.id, JobEndingRow.job_id)
            .execution_options(synchronize_session=False)
        )
        async with self.session() as s, s.begin():
            rows = (await s.execute(claim)).all()
        return sorted((int(ending_id), str(job_id)) for ending_id, job_id in rows)

    async def mark_delivered(self, ending_id: int, owner: str) -> bool:
        """Mark an ending delivered; False when ``owner``'s claim lapsed and another dispatcher took it."""
        async with self.session() as s, s.begin():
            done = await s.execute(
                update(JobEndingRow)
                .where(
                    JobEndingRow.id == ending_id,
                    JobEndingRow.claimed_by == owner,
                    JobEndingRow.delivered_at.is_(None),
                )
                .values(delivered_at=self.db_time(0.0), claimed_until=None)
            )
        return bool(getattr(done, "rowcount", 0))

    async def prune_outbox(self, events_kept_s: float, delivered_kept_s: float) -> tuple[int, int] | None:
        """Drop the stored events of jobs that ended over ``events_kept_s`` ago and endings delivered
        over ``delivered_kept_s`` ago; return how many of each, or None when another replica is pruning.

        ``job_event_seqs`` stays: a stream asked to resume a pruned job still gets its end,
        numbered after the last event it had (see JobService.events).
        """
        async with self.session() as s, s.begin():
            if self.postgres and not await s.scalar(select(func.pg_try_advisory_xact_lock(PRUNE_LOCK))):
                return None
            ended_long_ago = select(JobRow.id).where(
                JobRow.finished_at.is_not(None), self.db_before(JobRow.finished_at, -events_kept_s)
            )
            events = await s.execute(delete(EventRow).where(EventRow.job_id.in_(ended_long_ago)))
            rows = await s.execute(
                delete(JobEndingRow).where(
                    JobEndingRow.delivered_at.is_not(None),
                    self.db_before(JobEndingRow.delivered_at, -delivered_kept_s),
                )
            )
        return int(getattr(events, "rowcount", 0)), int(getattr(rows, "rowcount", 0))
