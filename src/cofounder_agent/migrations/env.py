"""Alembic's environment: run the migrations on the connection the caller shares, else on the URL.

The service passes its connection (``cofounder_agent.migrations.upgrade``), already locked and
in a transaction. Without one (``alembic revision --autogenerate`` in a checkout), the database
is IMAGE_DATABASE_URL's, reached through the async engine as the service reaches it.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from cofounder_agent.jobs.tables import Base


def _run(connection: Connection) -> None:
    # SQLite alters a table by copying it: render_as_batch makes autogenerate write it that way.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_url(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _url() -> str:
    from cofounder_agent.config import Settings

    return Settings().database_url


shared = context.config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif shared is not None:
    _run(shared)
else:
    asyncio.run(_run_on_url(_url()))
