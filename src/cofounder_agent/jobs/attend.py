"""Synchronous callers of the queue: a job runs for its client while the client is there.

``POST /api/media/generate-image`` and ``POST /v1/images/generations`` submit a job and hold
the request open until it ends. A client that gives up (its own timeout, a closed tab) would
otherwise leave both the job and the request task running, and a client that retries on
timeout would multiply the GPU's work. So the wait races the client's disconnect: when the
client leaves first, its job is cancelled and the request ends. A caller that sent an
``Idempotency-Key`` keeps its job: it can come back with the same key for the result.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from cofounder_agent.contract.errors import ClientGone, DomainError
from cofounder_agent.contract.fields import JOB_FIELDS
from cofounder_agent.jobs.service import JobService
from cofounder_agent.jobs.tables import JobRow
from cofounder_agent.schemas.jobs import JobCreate

Gone = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Caller:
    """Who waits for a synchronous job: how to notice it left, and the key it may come back with."""

    gone: Gone
    idempotency_key: str | None = None
    # The request as the caller sent it, hashed (``jobs.service.request_hash``), where the job
    # recipe does not stand for it: uploads get new ids each time. None: the recipe's hash.
    request_hash: str | None = None


async def run_for(
    jobs: JobService, recipe: JobCreate, caller: Caller, fields: Mapping[str, str] = JOB_FIELDS
) -> JobRow:
    """Submit ``recipe`` (or find the caller's keyed job) and wait for its end while the caller stays.

    ``fields`` names the caller's own request fields in a 422 (see ``jobs.recipes.JOB_FIELDS``).
    """
    view, _ = await jobs.submit(recipe, caller.idempotency_key, fields=fields, request_hash=caller.request_hash)
    waiter = asyncio.ensure_future(jobs.wait(view.id))
    watcher = asyncio.ensure_future(caller.gone())
    try:
        await asyncio.wait((waiter, watcher), return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():  # the job ended (even if the client left in the same instant)
            return waiter.result()
    finally:
        # Neither task may outlive the request, whichever way it ends.
        for task in (waiter, watcher):
            task.cancel()
        await asyncio.gather(waiter, watcher, return_exceptions=True)
    kept = caller.idempotency_key is not None
    if not kept:
        with contextlib.suppress(DomainError):  # it ended meanwhile: nothing left to cancel
            await jobs.cancel(view.id, wait_s=0)  # the worker stops it at its next step
    raise ClientGone(view.id, kept)
