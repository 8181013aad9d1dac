"""The job, image and board store: SQLAlchemy 2 async on SQLite (aiosqlite) or PostgreSQL (asyncpg).

Only the URL names the database; the SQL is shared except where a server database must
coordinate several processes (claims.py, the job numbers and the queue-length check here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, func, insert, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from cofounder_agent.contract.errors import QueueFull
from cofounder_agent.jobs.claims import JobClaims
from cofounder_agent.jobs.image_rows import ImageRows, delete_files, delete_images
from cofounder_agent.jobs.leases import DEFAULT_LEASE_S, Leases
from cofounder_agent.jobs.leases import MAX_ATTEMPTS as MAX_ATTEMPTS  # where callers have it from
from cofounder_agent.jobs.outbox_rows import OutboxRows
from cofounder_agent.jobs.pglisten import PgListener
from cofounder_agent.jobs.tables import BoardRow, CounterRow, ImageRow, JobRow, utcnow
from cofounder_agent.migrations import upgrade
from cofounder_agent.storage import LEFTOVER_AGE_S

if TYPE_CHECKING:
    from cofounder_agent.jobs.events import Progress
    from cofounder_agent.jobs.ports import BlobStore

log = logging.getLogger(__name__)

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# The advisory lock (any 64-bit number, one per purpose) that serialises the queue-length check.
QUEUE_LOCK = 0x636F_6661_0001


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL: readers (progress, lists) never wait for the worker's writes, and a commit is one
    append instead of a journal round trip with several fsyncs. ``synchronous=NORMAL`` is the
    setting WAL is made for: a committed job survives the process crashing (SIGKILL included);
    only a power cut or OS crash may lose the last few commits. SQLite enforces foreign keys
    only when asked, per connection; the other backends always do."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def sqlite_url(data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{(data_dir / 'jobs.sqlite3').resolve()}"


class Store(JobClaims, OutboxRows, Leases, ImageRows):
    """All persistent state of jobs, images, boards and workers."""

    def __init__(self, url: str, *, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.lease_s = lease_s
        self.engine: AsyncEngine = create_async_engine(url)
        self.postgres = self.engine.dialect.name == "postgresql"
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.session = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite: one process owns the file, and its submissions queue here rather than on the
        # file's write lock (which would make them wait and retry). PostgreSQL needs no such
        # lock: a sequence numbers jobs, a unique key and an advisory lock guard the rest.
        self._submit_lock = asyncio.Lock()
        self._work = asyncio.Event()
        self._ended = asyncio.Event()  # an ending recorded by this process (its dispatcher's wake-up)
        self._listening_endings = False
        # PostgreSQL: this process's LISTEN connection (workers' wake-ups; the event bus may share it).
        self._listener = PgListener(url) if self.postgres else None
        self._listening = False

    async def init(self) -> None:
        """Bring the schema to the newest migration (Alembic), one process at a time."""
        await upgrade(self.engine.url)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        await self.engine.dispose()

    @property
    def listener(self) -> PgListener | None:
        """The process's LISTEN connection on PostgreSQL (None on SQLite)."""
        return self._listener

    # --- jobs -----------------------------------------------------------------------------

    async def add_job(
        self,
        recipe: dict[str, Any],
        *,
        priority: int = 0,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        callback_url: str | None = None,
        board_id: str | None = None,
        max_queued: int | None = None,
        batch_key: str | None = None,
        on_queued: Callable[[JobRow, int], None] | None = None,
    ) -> tuple[JobRow, bool]:
        """Queue a job; return it and whether it is new (False: same Idempotency-Key seen).

        ``request_hash`` is kept beside the key; comparing it with a later request's is the
        caller's (``JobService.submit``).

        ``on_queued(job, position)`` runs as soon as a new job is committed, before any worker
        of this process is woken and with no await in between: its "queued" event comes
        before the worker's "started".

        A job whose board was deleted a moment ago (after the caller checked it) is queued
        without a board, as the board's own jobs and images are left by its deletion.
        """
        lock = contextlib.nullcontext() if self.postgres else self._submit_lock
        async with lock:
            for board in (board_id, None) if board_id is not None else (None,):
                try:
                    async with self.session() as s, s.begin():
                        if idempotency_key is not None:
                            found = await s.scalar(select(JobRow).where(JobRow.idempotency_key == idempotency_key))
                            if found is not None:
                                return found, False
                        if max_queued is not None:
                            await self._check_room(s, max_queued)
                        job = JobRow(
                            id=uuid.uuid4().hex,
                            status="queued",
                            priority=priority,
                            recipe=recipe,
                            idempotency_key=idempotency_key,
                            request_hash=request_hash if idempotency_key is not None else None,
                            callback_url=callback_url,
                            board_id=board,
                            image_ids=[],
                            batch_key=batch_key,
                        )
                        if not self.postgres:  # PostgreSQL: the column's identity numbers it
                            job.seq = await _next_job_seq(s)
                        s.add(job)
                        await s.flush()
                        position = await self._position(s, job) if on_queued is not None else 0
                        await self.notify_work(s)
                    if on_queued is not None:
                        on_queued(job, position)
                    self._work.set()
                    return job, True
                except IntegrityError:
                    if idempotency_key is not None:
                        # Another replica stored the same key between our look and our insert.
                        found = await self.find_by_key(idempotency_key)
                        if found is not None:
                            return found, False
                    # The foreign key refused a board deleted meanwhile: try once more without it.
                    if board is None or await self.get_board(board) is not None:
                        raise
        raise AssertionError("unreachable: the last attempt has no board")

    @staticmethod
    async def _position(s: AsyncSession, job: JobRow) -> int:
        ahead = (JobRow.priority > job.priority) | ((JobRow.priority == job.priority) & (JobRow.seq < job.seq))
        return await s.scalar(select(func.count()).where(JobRow.status == "queued", ahead)) or 0

    async def _check_room(self, s: AsyncSession, max_queued: int) -> None:
        """Refuse a submit that would take the queue past ``max_queued`` (counted in ``s``'s transaction).

        PostgreSQL: replicas submit at once, so the count and the insert run under a
        transaction-scoped advisory lock; the next submit counts after this one commits.
        """
        if self.postgres:
            await s.execute(select(func.pg_advisory_xact_lock(QUEUE_LOCK)))
        queued = await s.scalar(select(func.count()).where(JobRow.status == "queued"))
        if (queued or 0) >= max_queued:
            raise QueueFull("the queue is full")

    async def find_by_key(self, key: str) -> JobRow | None:
        async with self.session() as s:
            return await s.scalar(select(JobRow).where(JobRow.idempotency_key == key))

    async def get_job(self, job_id: str) -> JobRow | None:
        async with self.session() as s:
            return await s.get(JobRow, job_id)

    async def list_jobs(self, status: str | None, limit: int, offset: int) -> tuple[Sequence[JobRow], int]:
        query = select(JobRow)
        count = select(func.count()).select_from(JobRow)
        if status is not None:
            query, count = query.where(JobRow.status == status), count.where(JobRow.status == status)
        async with self.session() as s:
            rows = (await s.scalars(query.order_by(JobRow.seq.desc()).limit(limit).offset(offset))).all()
            total = await s.scalar(count) or 0
        return rows, total

    async def queue_position(self, job: JobRow) -> int:
        """How many queued jobs run before this one (0 = next)."""
        async with self.session() as s:
            return await self._position(s, job)

    async def count(self, status: str) -> int:
        async with self.session() as s:
            return await s.scalar(select(func.count()).where(JobRow.status == status)) or 0

    async def count_by_status(self) -> dict[str, int]:
        async with self.session() as s:
            rows = await s.execute(select(JobRow.status, func.count()).group_by(JobRow.status))
            return {status: count for status, count in rows.all()}

    async def request_cancel(self, job_id: str) -> bool:
        """Flag a job that has not ended to stop; False when it has ended (or is unknown)."""
        async with self.session() as s, s.begin():
            done = await s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status.in_(("queued", "running")))
                .values(cancel_requested=True)
            )
        return bool(getattr(done, "rowcount", 0))

    async def cancel_requested(self, job_id: str) -> bool:
        async with self.session() as s:
            return bool(await s.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id)))

    async def set_progress(self, job_id: str, worker_id: str | None, progress: Progress) -> None:
        """Record where a running job is (the worker coalesces its calls).

        Fenced as ``finish`` is: with ``worker_id``, only while that worker holds the job's
        lease (a worker that lost it must not overwrite the progress of the job's next run).
        """
        held = JobRow.worker_id == worker_id if worker_id is not None else true()
        async with self.session() as s, s.begin():
            await s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "running", held)
                .values(progress=progress.model_dump(mode="json"))
            )

    async def queued_positions(self, job_ids: Collection[str]) -> dict[str, int]:
        """Queue positions of those of ``job_ids`` that are still queued, in one query."""
        if not job_ids:
            return {}
        # The claim order (see claim_next) numbered by a window function: one pass over the
        # queued jobs however many positions are asked for (SQLite >= 3.25, PostgreSQL).
        rank = func.row_number().over(order_by=(JobRow.priority.desc(), JobRow.seq)) - 1
        ranked = select(JobRow.id, rank.label("position")).where(JobRow.status == "queued").subquery()
        query = select(ranked.c.id, ranked.c.position).where(ranked.c.id.in_(list(job_ids)))
        async with self.session() as s:
            return {job_id: int(position) for job_id, position in (await s.execute(query)).all()}

    async def finish(
        self,
        job_id: str,
        status: str,
        *,
        error: str | None = None,
        image_ids: list[str] | None = None,
        results: list[dict[str, Any]] | None = None,
        worker_id: str | None = None,
    ) -> JobRow | None:
        """Move a job to a terminal state (only once: a finished job stays as it is).

        Fenced: with ``worker_id``, only while that worker holds the job's lease; a worker
        that lost it (reaped, maybe claimed again by another) gets None and changes nothing.
        """
        assert status in TERMINAL
        async with self.session() as s, s.begin():
            # Locked (PostgreSQL): a reap cannot slip between this read and the write.
            job = await s.get(JobRow, job_id, with_for_update=True)
            if worker_id is not None and (job is None or job.status != "running" or job.worker_id != worker_id):
                return None
            if job is None or job.status in TERMINAL:
                return job
            now = utcnow()
            job.status, job.error, job.finished_at = status, error, now
            job.lease_expires_at = None
            if image_ids is not None:
                job.image_ids = image_ids
            if results is not None:
                job.results = results
            if job.started_at is not None:
                job.seconds = (now - job.started_at).total_seconds()
            await self.record_endings(s, [job_id])  # committed with the end, or not at all
        self.endings_recorded()
        return job

    async def cancel_if_queued(self, job_id: str, reason: str) -> JobRow | None:
        """Cancel a job that has not started; None when it is no longer queued (atomic)."""
        async with self.session() as s, s.begin():
            done = await s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "queued")
                .values(status="cancelled", error=reason, finished_at=utcnow())
            )
            if not getattr(done, "rowcount", 0):
                return None
            await self.record_endings(s, [job_id])
        self.endings_recorded()
        return await self.get_job(job_id)

    async def average_seconds(self, last: int = 20) -> float | None:
        """Mean run time of the latest succeeded jobs, for Retry-After and ETA hints."""
        recent = select(JobRow.seconds).where(JobRow.status == "succeeded").order_by(JobRow.seq.desc()).limit(last)
        async with self.session() as s:
            values = [v for v in (await s.scalars(recent)).all() if v is not None]
        return sum(values) / len(values) if values else None

    async def recover(self, files: BlobStore | None = None) -> tuple[list[str], list[str]]:
        """After a crash: re-queue interrupted jobs once, fail those interrupted again.

        What the interrupted attempts stored goes (a re-queued job starts afresh; a failed one
        has no results), and with ``files``, so does every image file without a row: a crash
        between writing a file and inserting its row left it, and no one can reach it.
        """
        # PostgreSQL: other workers' jobs are theirs while they renew: only unleased or expired ones.
        which = JobRow.lease_expires_at.is_(None) | self.db_before(JobRow.lease_expires_at) if self.postgres else true()
        async with self.session() as s, s.begin():
            requeued, failed = await self.interrupt(s, which, "interrupted by a server restart")
            interrupted = requeued + failed
            orphans = await delete_images(s, ImageRow.job_id.in_(interrupted)) if interrupted else []
            # Rows written before foreign keys were enforced may name a deleted board.
            boards = select(BoardRow.id)
            for row, column in ((ImageRow, ImageRow.board_id), (JobRow, JobRow.board_id)):
                dangling = column.is_not(None) & column.not_in(boards)
                await s.execute(update(row).where(dangling).values(board_id=None))
        if requeued:
            self.work_arrived()
        if failed:
            self.endings_recorded()
        if files is not None:
            # Rows go first, files after: a crash in between leaves files without rows, found here next time.
            # On PostgreSQL other processes share the directory: a file younger than the grace
            # may be a running worker's, written an instant before its row.
            grace = LEFTOVER_AGE_S if self.postgres else 0.0
            unrowed = await asyncio.to_thread(files.ids, grace) - set(await self.image_ids())
            await asyncio.to_thread(delete_files, files, [*orphans, *sorted(unrowed)])
            if orphans or unrowed:
                log.warning(
                    "removed %s image(s) of interrupted jobs, %s file(s) without a row", len(orphans), len(unrowed)
                )
        return requeued, failed

    async def forget_intermediates(self, job_id: str, image_ids: set[str]) -> None:
        """Drop these ids from the job's stored ``results[].intermediate_ids``."""
        async with self.session() as s, s.begin():
            job = await s.get(JobRow, job_id)
            if job is not None:  # a new list: the JSON column sees a replacement, not an edit
                job.results = [
                    {**r, "intermediate_ids": [i for i in r.get("intermediate_ids", []) if i not in image_ids]}
                    for r in job.results
                ]


async def _next_job_seq(s: AsyncSession) -> int:
    """SQLite: the next job number from the ``counters`` row (taking the file's write lock)."""
    advance = update(CounterRow).where(CounterRow.name == "jobs").values(last=CounterRow.last + 1)
    seq = await s.scalar(advance.returning(CounterRow.last))
    if seq is None:
        # First job of this file (or of a file an older version numbered by max()+1): the
        # counter starts where the jobs are, once.
        start = select(func.coalesce(func.max(JobRow.seq), 0)).scalar_subquery()
        await s.execute(insert(CounterRow).values(name="jobs", last=start))
        seq = await s.scalar(advance.returning(CounterRow.last))
    assert seq is not None
    return int(seq)
