"""Database rows: jobs, images and boards (SQLAlchemy 2 declarative, any SQL backend)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Store instants in UTC and read them back timezone-aware, on every backend.

    SQLite has no zone-aware type: it keeps the wall-clock digits and drops the offset, so a
    value is converted to UTC before it is written and tagged UTC when it is read.
    PostgreSQL's ``timestamptz`` does the same by itself; the conversion is then a no-op.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware one (see utcnow)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        dict[str, Any] | None: JSON,
        list[str]: JSON,
        list[dict[str, Any]]: JSON,
    }


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_queue", "status", "priority", "seq"),)
    # ``seq`` may come from the database (an identity): read it back with the INSERT.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Monotonic submission order: created_at can tie, seq cannot. Numbered by the database: an
    # identity on PostgreSQL; on SQLite (no identities) the ``counters`` row "jobs" (see Store.add_job).
    seq: Mapped[int] = mapped_column(Integer, Identity(), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    recipe: Mapped[dict[str, Any]] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True, default=None)
    # sha256 of the request that first used ``idempotency_key`` (None: no key, or a job stored
    # before revision 0006): the same key with another request is refused.
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    callback_url: Mapped[str | None] = mapped_column(Text, default=None)
    # A deleted board leaves its jobs unboarded, as it leaves its images.
    board_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("boards.id", ondelete="SET NULL"), index=True, default=None
    )
    # The engine batch key of the job's first generation, as text (None: it runs alone).
    batch_key: Mapped[str | None] = mapped_column(Text, default=None)
    # Set by the API, read by the worker: a running job stops at its next step.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # The running job's progress record (jobs.events.Progress), written a few times a second.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Unused since progress lives in ``progress``; kept until a migration drops them.
    stage: Mapped[str | None] = mapped_column(String(32), default=None)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    image_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    seconds: Mapped[float | None] = mapped_column(Float, default=None)
    # The lease (jobs/leases.py): the worker that holds the running job, until when (on the
    # database's clock: every write and comparison is SQL), and the worker of each run so far.
    worker_id: Mapped[str | None] = mapped_column(String(32), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # A server default too: rows written without it (older code, raw SQL) read as "no runs named".
    attempt_workers: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")


class BoardRow(Base):
    __tablename__ = "boards"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ImageRow(Base):
    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True, default=None)
    board_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("boards.id", ondelete="SET NULL"), index=True, default=None
    )
    media_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))
    intermediate: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CounterRow(Base):
    """A named counter advanced with ``UPDATE … RETURNING``: job numbers on SQLite, which has no sequences."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last: Mapped[int] = mapped_column(BigInteger, default=0)


class EventSeqRow(Base):
    """The last event number of each job's stream (PostgreSQL bus): an upsert numbers the next one."""

    __tablename__ = "job_event_seqs"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class EventRow(Base):
    """A job's event as the PostgreSQL bus stores it: ``kind`` names its class, ``payload`` its fields."""

    __tablename__ = "job_events"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WorkerRow(Base):
    """A worker process: what it runs on, whether its models are loaded, when it last beat."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(255))
    precision: Mapped[str] = mapped_column(String(32))
    ready: Mapped[bool] = mapped_column(Boolean, default=False)
    # Both on the database's clock (written by SQL), as leases are.
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    current_job_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The engine's status as it reports it (services.image_service.EngineStatus as a dict).
    engine: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")


class JobEndingRow(Base):
    """The outbox: one row per job end, written with the end; its finish hooks run once, anywhere."""

    __tablename__ = "job_endings"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A dispatcher's claim, on the database's clock: a claim that lapses (its process died) is retaken.
    claimed_by: Mapped[str | None] = mapped_column(String(32), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
