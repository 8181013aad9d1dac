"""Claiming queued jobs and waiting for new ones: the part of ``Store`` that differs by dialect.

PostgreSQL: many workers on many hosts claim from one table, so a claim is one statement that
locks the row it picks and skips rows another transaction holds (``FOR UPDATE SKIP LOCKED``),
and ``LISTEN/NOTIFY`` wakes idle workers. SQLite: one process owns the file and SQLite runs one
writer at a time, so a claim stays the conditional UPDATE it always was, woken in-process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from cofounder_agent.jobs.pglisten import POSITIONS_CHANNEL, WORK_CHANNEL, PgListener
from cofounder_agent.jobs.tables import JobRow


class JobClaims:
    """Claims, companions, release and the "work arrived" signal; part of ``Store``."""

    engine: AsyncEngine
    session: async_sessionmaker[AsyncSession]
    # The in-process "work arrived" signal, set by a submit, a release or a notification and
    # cleared by the waiter: a submit between an empty claim and the wait is kept.
    _work: asyncio.Event
    _listener: PgListener | None
    _listening: bool

    claim_values: Callable[[str | None], dict[str, Any]]  # Leases
    get_job: Callable[[str], Awaitable[JobRow | None]]  # Store

    async def claim_next(self, worker_id: str | None = None) -> JobRow | None:
        """Mark the next queued job running and return it (highest priority, then oldest).

        Leased to ``worker_id`` (see leases.py). A job cancelled between choosing and claiming
        it stays cancelled, and the next candidate is tried.
        """
        queued = select(JobRow.id).where(JobRow.status == "queued").order_by(JobRow.priority.desc(), JobRow.seq)
        if self._listener is not None:
            claimed = await self._claim_locked(queued.limit(1), worker_id)
            return claimed[0] if claimed else None
        while True:  # SQLite: choose, then a conditional UPDATE (one writer at a time)
            async with self.session() as s, s.begin():
                job_id = await s.scalar(queued.limit(1))
                if job_id is None:
                    return None
                claimed_rows = await s.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.status == "queued")
                    .values(**self.claim_values(worker_id))
                )
            if getattr(claimed_rows, "rowcount", 0):
                return await self.get_job(job_id)

    async def claim_companions(self, job: JobRow, limit: int, worker_id: str | None = None) -> list[JobRow]:
        """Claim up to ``limit`` more queued jobs of ``job``'s priority and batch key, oldest first.

        Micro-batching: they run beside ``job`` as one batch. Only the same priority, so a
        batch never lets a job jump ahead of a more urgent one. A job without a key runs alone.
        """
        if job.batch_key is None or limit < 1:
            return []
        mates = (
            select(JobRow.id)
            .where(JobRow.status == "queued", JobRow.priority == job.priority, JobRow.batch_key == job.batch_key)
            .order_by(JobRow.seq)
            .limit(limit)
        )
        if self._listener is not None:
            return await self._claim_locked(mates, worker_id)
        async with self.session() as s:
            candidates = (await s.scalars(mates)).all()
        claimed: list[JobRow] = []
        for candidate in candidates:
            async with self.session() as s, s.begin():
                result = await s.execute(
                    update(JobRow)
                    .where(JobRow.id == candidate, JobRow.status == "queued")
                    .values(**self.claim_values(worker_id))
                )
            if getattr(result, "rowcount", 0):
                row = await self.get_job(candidate)
                if row is not None:
                    claimed.append(row)
        return claimed

    async def _claim_locked(self, candidates: Select[str], worker_id: str | None) -> list[JobRow]:
        """PostgreSQL: mark ``candidates`` running in one statement, skipping rows others hold.

        A row a concurrent claim (or cancel) has locked is passed over, not waited for; a row
        changed meanwhile is re-checked against ``status = 'queued'`` before it is taken.
        """
        claim = (
            update(JobRow)
            .where(JobRow.id.in_(candidates.with_for_update(skip_locked=True).scalar_subquery()))
            .values(**self.claim_values(worker_id))
            .returning(JobRow)
            .execution_options(synchronize_session=False)
        )
        async with self.session() as s, s.begin():
            rows = list((await s.scalars(claim)).all())
        return sorted(rows, key=lambda row: (-row.priority, row.seq))

    async def wait_for_work(self, timeout_s: float) -> None:
        """Return when a job may have been queued since the last call (or after ``timeout_s``)."""
        if self._listener is not None and not self._listening:
            self._listening = True
            try:
                await self._listener.listen(WORK_CHANNEL, self._wake)
            except BaseException:
                self._listening = False
                raise
            return  # a submit before the LISTEN began was not heard: look at the queue again
        try:
            async with asyncio.timeout(timeout_s):
                await self._work.wait()
        except TimeoutError:
            return
        self._work.clear()

    def _wake(self, _payload: str | None) -> None:
        self._work.set()

    def work_arrived(self) -> None:
        """Wake this process's idle worker (after a commit that queued a job)."""
        self._work.set()

    async def notify_work(self, s: AsyncSession) -> None:
        """Wake idle workers of other processes when ``s`` commits (this one: set ``_work`` after it)."""
        if self._listener is not None:
            await s.execute(select(func.pg_notify(WORK_CHANNEL, "")))

    async def notify_positions(self) -> None:
        """PostgreSQL: tell every process's event bus that queue positions changed (a claim, a cancel)."""
        if self._listener is not None:
            async with self.session() as s, s.begin():
                await s.execute(select(func.pg_notify(POSITIONS_CHANNEL, "")))

    async def release(self, job_id: str, worker_id: str | None = None) -> None:
        """Put a job stopped by a graceful shutdown back in the queue, not counting the attempt.

        With ``worker_id``, only while that worker holds it: a job its lease was lost on is
        someone else's now.
        """
        held = JobRow.worker_id == worker_id if worker_id is not None else JobRow.status == "running"
        async with self.session() as s, s.begin():
            await s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "running", held)
                .values(
                    status="queued", started_at=None, attempts=JobRow.attempts - 1, progress=None, lease_expires_at=None
                )
            )
            await self.notify_work(s)
        self._work.set()
