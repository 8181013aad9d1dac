"""Leases, reaping and the workers table: the part of ``Store`` that keeps time on the database.

A claimed job is leased to its worker until ``lease_expires_at``; the worker's heartbeat renews
it. Every instant here is the database's own (``now()`` on PostgreSQL, ``'now'`` on SQLite),
written and compared in SQL, so the hosts' clocks never meet: a worker on a host whose clock is
off can neither lose a lease early nor keep one late.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import JSON, ColumnElement, String, bindparam, case, cast, delete, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cofounder_agent.jobs.tables import JobRow, UTCDateTime, WorkerRow, utcnow

# A job's runs at most: one interrupted this many times (a restart, a lease run out) fails.
MAX_ATTEMPTS = 2
DEFAULT_LEASE_S = 60.0
# SQLite keeps instants as text; this is the text SQLAlchemy writes and reads (milliseconds).
_SQLITE_INSTANT = "%Y-%m-%d %H:%M:%f"


class Leases:
    """Lease arithmetic on the database's clock, renewals, reaping and worker rows; part of ``Store``."""

    session: async_sessionmaker[AsyncSession]
    postgres: bool
    lease_s: float
    notify_work: Callable[[AsyncSession], Awaitable[None]]  # JobClaims
    work_arrived: Callable[[], None]  # JobClaims

    # --- the database's clock -------------------------------------------------------------

    def db_time(self, offset_s: float = 0.0) -> ColumnElement[Any]:
        """The database's now, plus ``offset_s`` seconds, as an SQL expression."""
        if self.postgres:
            now = func.now()
            return now + bindparam(None, timedelta(seconds=offset_s)) if offset_s else now
        return func.strftime(_SQLITE_INSTANT, "now", f"{offset_s:+f} seconds")

    def db_before(self, column: Any, offset_s: float = 0.0) -> ColumnElement[bool]:
        """``column`` is earlier than the database's now plus ``offset_s`` seconds."""
        if self.postgres:
            return column < self.db_time(offset_s)  # type: ignore[no-any-return]
        # SQLite compares text: julianday reads both spellings (with or without a fraction).
        return func.julianday(column) < func.julianday(self.db_time(offset_s))

    def claim_values(self, worker_id: str | None) -> dict[str, Any]:
        """What a claim writes: running, one more attempt and, for a named worker, its lease."""
        values: dict[str, Any] = {"status": "running", "attempts": JobRow.attempts + 1, "started_at": utcnow()}
        if worker_id is None:  # an unnamed claimer (tests, tools) holds no lease: only recover frees it
            return {**values, "worker_id": None, "lease_expires_at": None}
        if self.postgres:
            name = func.jsonb_build_array(cast(literal(worker_id), String))
            runs: Any = cast(cast(JobRow.attempt_workers, JSONB).op("||")(name), JSON)
        else:
            runs = func.json_insert(JobRow.attempt_workers, "$[#]", worker_id)
        return {
            **values,
            "worker_id": worker_id,
            "lease_expires_at": self.db_time(self.lease_s),
            "attempt_workers": runs,
        }

    # --- leases ---------------------------------------------------------------------------

    async def renew(self, worker_id: str, job_ids: Collection[str]) -> set[str]:
        """Extend the leases ``worker_id`` still holds among ``job_ids``; return those it holds."""
        if not job_ids:
            return set()
        renewal = (
            update(JobRow)
            .where(JobRow.id.in_(list(job_ids)), JobRow.worker_id == worker_id, JobRow.status == "running")
            .values(lease_expires_at=self.db_time(self.lease_s))
            .returning(JobRow.id)
            .execution_options(synchronize_session=False)
        )
        async with self.session() as s, s.begin():
            return set((await s.scalars(renewal)).all())

    async def reap(self) -> tuple[list[str], list[str]]:
        """Re-queue running jobs whose lease ran out (one attempt used); fail those out of attempts.

        One statement: reapers on several hosts may run at once, and each expired job is taken
        by exactly one of them (the others' UPDATE re-reads the row and no longer matches).
        """
        last = JobRow.attempts >= MAX_ATTEMPTS
        reason = (
            literal("its worker stopped renewing its lease ")
            + cast(JobRow.attempts, String)
            + literal(" times; not retried again")
        )
        reaping = (
            update(JobRow)
            .where(
                JobRow.status == "running",
                JobRow.lease_expires_at.is_not(None),
                self.db_before(JobRow.lease_expires_at),
            )
            .values(
                status=case((last, "failed"), else_="queued"),
                error=case((last, reason), else_=JobRow.error),
                finished_at=case((last, literal(utcnow(), UTCDateTime)), else_=JobRow.finished_at),
                started_at=case((last, JobRow.started_at), else_=None),
                lease_expires_at=None,
                progress=None,
            )
            .returning(JobRow.id, JobRow.status)
            .execution_options(synchronize_session=False)
        )
        async with self.session() as s, s.begin():
            reaped = (await s.execute(reaping)).all()
            if any(status == "queued" for _, status in reaped):
                await self.notify_work(s)
        requeued = [job_id for job_id, status in reaped if status == "queued"]
        if requeued:
            self.work_arrived()
        return requeued, [job_id for job_id, status in reaped if status == "failed"]

    # --- workers --------------------------------------------------------------------------

    async def register_worker(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        device: str,
        model: str,
        precision: str,
        ready: bool,
        engine: Mapping[str, Any] | None = None,
    ) -> None:
        """Add a worker's row, beating now; ``engine`` is its engine's status as JSON."""
        row = {"id": worker_id, "host": host, "pid": pid, "device": device, "model": model, "precision": precision}
        now = self.db_time()
        async with self.session() as s, s.begin():
            await s.execute(
                insert(WorkerRow).values(
                    **row,
                    ready=ready,
                    started_at=now,
                    heartbeat_at=now,
                    current_job_ids=[],
                    engine=dict(engine or {}),
                )
            )

    async def heartbeat(
        self,
        worker_id: str,
        *,
        ready: bool,
        job_ids: Collection[str],
        model: str | None = None,
        engine: Mapping[str, Any] | None = None,
    ) -> bool:
        """Say the worker is alive, whether it is ready and what it runs; False: it has no row.

        ``engine`` (its engine's status) also updates the device and precision it names, which
        are known only once the models have loaded.
        """
        values: dict[str, Any] = {"heartbeat_at": self.db_time(), "ready": ready, "current_job_ids": sorted(job_ids)}
        if model is not None:
            values["model"] = model
        if engine is not None:
            values["engine"] = dict(engine)
            values |= {key: engine[key] for key in ("device", "precision") if engine.get(key)}
        async with self.session() as s, s.begin():
            done = await s.execute(update(WorkerRow).where(WorkerRow.id == worker_id).values(**values))
        return bool(getattr(done, "rowcount", 0))

    async def live_workers(self, within_s: float) -> Sequence[WorkerRow]:
        """Workers that beat within the last ``within_s`` seconds, oldest first."""
        alive = ~self.db_before(WorkerRow.heartbeat_at, -within_s)
        async with self.session() as s:
            return (await s.scalars(select(WorkerRow).where(alive).order_by(WorkerRow.started_at))).all()

    async def deregister(self, worker_id: str) -> None:
        """Drop a stopping worker's row."""
        async with self.session() as s, s.begin():
            await s.execute(delete(WorkerRow).where(WorkerRow.id == worker_id))
