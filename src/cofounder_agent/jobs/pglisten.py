"""One PostgreSQL ``LISTEN`` connection per process, fanning notifications out to callbacks.

A notification is a hint, never the data: each listener reads what changed from the tables.
So a notification lost while the connection was down costs nothing but latency: after a
reconnect every callback is called once with ``None`` ("anything may have changed").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy import make_url

log = logging.getLogger(__name__)

# Notification channels (one namespace per database).
WORK_CHANNEL = "cofounder_agent_work"
EVENTS_CHANNEL = "cofounder_agent_events"
# A job ended (its outbox row is committed): a dispatcher delivers it (outbox.py).
ENDINGS_CHANNEL = "cofounder_agent_endings"
# The queue moved (a claim, a cancel): each API replica re-announces its own streams' places.
POSITIONS_CHANNEL = "cofounder_agent_positions"

RECONNECT_S = 1.0

Callback = Callable[[str | None], None]


def asyncpg_dsn(url: str) -> str:
    """The libpq DSN asyncpg takes for a SQLAlchemy ``postgresql+asyncpg://`` URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PgListener:
    """Listen on channels over one dedicated connection (not a pooled one: it is held for good)."""

    def __init__(self, url: str) -> None:
        self._dsn = asyncpg_dsn(url)
        self._callbacks: dict[str, list[Callback]] = {}
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._reconnect: asyncio.Task[None] | None = None
        self._closed = False

    async def listen(self, channel: str, callback: Callback) -> None:
        """Call ``callback(payload)`` for each notification on ``channel``, from now on."""
        async with self._lock:
            first = channel not in self._callbacks
            self._callbacks.setdefault(channel, []).append(callback)
            if self._conn is None:
                await self._connect()
            elif first:
                await self._conn.add_listener(channel, self._dispatch)

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        conn.add_termination_listener(self._lost)
        for channel in self._callbacks:
            await conn.add_listener(channel, self._dispatch)
        self._conn = conn

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        for callback in self._callbacks.get(channel, []):
            callback(payload)

    def _lost(self, _conn: object) -> None:
        if self._closed or self._reconnect is not None:
            return
        log.warning("the LISTEN connection to PostgreSQL closed; reconnecting")
        self._conn = None
        self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        while not self._closed:
            try:
                async with self._lock:
                    await self._connect()
                break
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(RECONNECT_S)
        self._reconnect = None
        # Notifications sent while nobody listened are gone: everyone looks again.
        for callbacks in list(self._callbacks.values()):
            for callback in callbacks:
                callback(None)

    async def close(self) -> None:
        self._closed = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.remove_termination_listener(self._lost)
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await conn.close(timeout=5)
