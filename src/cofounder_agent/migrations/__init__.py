"""The job store's schema under Alembic: upgrade at start, one process at a time; no alembic.ini.

The scripts live beside this file (env.py, versions/) and travel in the wheel. A database made
by ``create_all`` before migrations existed holds revision 0001_baseline's tables without an
``alembic_version`` table: it is stamped at the baseline first, then upgraded like any other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, event, inspect, make_url, pool, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = logging.getLogger(__name__)
# Alembic announces each of its plugins at INFO on every run; the migrations it runs stay at INFO.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

BASELINE = "0001_baseline"
# One key for every replica of this service: pg_advisory_xact_lock takes any bigint.
PG_LOCK_KEY = 0x636F666F756E6465  # "cofounde"
# How long a second process waits for SQLite's write lock while the first one migrates.
SQLITE_LOCK_WAIT_S = 120.0


def alembic_config(connection: Connection | None = None) -> Config:
    """The programmatic Alembic configuration; ``connection`` is shared with env.py."""
    config = Config()
    config.set_main_option("script_location", "cofounder_agent:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest revision the installed scripts know."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def redacted(url: str | URL) -> str:
    """The URL as it may be logged: without its password."""
    return make_url(url).render_as_string(hide_password=True)


async def upgrade(url: str | URL) -> str | None:
    """Bring the database at ``url`` to the newest revision under an exclusive lock; return it.

    Every migration and the version stamp run in one transaction holding the lock, so a second
    replica starting at the same moment waits, then finds the schema current and does nothing.
    PostgreSQL: a transaction-scoped advisory lock. SQLite: ``BEGIN IMMEDIATE``, the database
    file's write lock, taken before the schema is read (its DDL is transactional too).
    """
    engine = _migration_engine(make_url(url))
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
            before, after = await conn.run_sync(_upgrade)
    finally:
        await engine.dispose()
    if before != after:
        log.info("database %s upgraded from revision %s to %s", redacted(url), before, after)
    return after


async def current_revision(url: str | URL) -> str | None:
    """The revision the database at ``url`` is at (None: not under migrations yet)."""
    engine = create_async_engine(make_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current)
    finally:
        await engine.dispose()


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _upgrade(conn: Connection) -> tuple[str | None, str | None]:
    tables = set(inspect(conn).get_table_names())
    config = alembic_config(conn)
    before = _current(conn)
    if before is None and "jobs" in tables:
        # 1. Made by create_all before migrations: the baseline's tables are there already.
        command.stamp(config, BASELINE)
        before = f"{BASELINE} (stamped: made before migrations)"
    # 2. Everything newer, in order, in this transaction.
    command.upgrade(config, "head")
    return before, _current(conn)


def _migration_engine(url: URL) -> AsyncEngine:
    """A short-lived engine for one upgrade (no pool: its connection goes when it ends)."""
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, poolclass=pool.NullPool)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, poolclass=pool.NullPool, connect_args={"timeout": SQLITE_LOCK_WAIT_S})
    # sqlite3 begins a transaction lazily, before the first INSERT/UPDATE, never before DDL or a
    # read: left alone, two processes would both read "no tables" and both create them. Driving
    # BEGIN ourselves takes the write lock first (SQLAlchemy's documented pysqlite recipe).
    event.listen(engine.sync_engine, "connect", _sqlite_manual_transactions)
    event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
    return engine


def _sqlite_manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
