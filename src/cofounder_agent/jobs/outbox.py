"""The job-end outbox's dispatcher: runs the finish hooks (webhooks, metrics) once per job end.

Every transaction that ends a job also writes its ``job_endings`` row (outbox_rows.py), so an
end is never lost, whichever process ended the job (a worker, a cancel in the API, a reap, a
restart). Each API process runs one dispatcher; dispatchers claim rows on the database's clock,
run the hooks and mark the rows delivered, so each end's hooks run once however many replicas
run. A dispatcher that dies mid-delivery leaves its claim, which lapses after ``claim_s``:
another dispatcher (or this one, restarted) takes the row again and runs its hooks again; a
hook sees an end at least once, and exactly once unless a dispatcher died while delivering it.

A hook's own failure is logged and not retried here (the row is marked delivered): the
webhook hook retries inside ``WebhookSender``, and a metrics hook is not worth a second run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from cofounder_agent.jobs.store import Store
from cofounder_agent.jobs.tables import JobRow

log = logging.getLogger(__name__)

# Called with the ended job's row: webhooks and metrics hang here.
FinishHook = Callable[[JobRow], Awaitable[None]]

# A hook gets this long; the hooks of one end run side by side, so a delivery takes at most
# this long, well inside a claim (a live dispatcher never sees its claim lapse under it).
HOOK_TIMEOUT_S = 30.0
CLAIM_S = 60.0
# The safety net under the wake-ups (NOTIFY on PostgreSQL, in-process on SQLite): a lapsed
# claim, or a notification lost while the LISTEN connection was down, waits at most this long.
POLL_S = 5.0
PRUNE_EVERY_S = 300.0
# A job's stored events (PostgreSQL's job_events) are kept this long after it ended, for
# clients resuming its stream; later a resumed stream gets the job's end only.
EVENTS_KEPT_S = 3600.0
# Delivered outbox rows are kept this long (to look into what was delivered, and when).
DELIVERED_KEPT_S = 86400.0


class EndingDispatcher:
    """Claims undelivered endings, runs the finish hooks on each, marks it delivered; prunes now and then."""

    def __init__(
        self,
        store: Store,
        hooks: Sequence[FinishHook],
        *,
        claim_s: float = CLAIM_S,
        poll_s: float = POLL_S,
        hook_timeout_s: float = HOOK_TIMEOUT_S,
        prune_every_s: float = PRUNE_EVERY_S,
    ) -> None:
        self.store, self.hooks = store, list(hooks)
        self.claim_s, self.poll_s, self.hook_timeout_s = claim_s, poll_s, hook_timeout_s
        self.prune_every_s = prune_every_s
        self.id = uuid.uuid4().hex  # its name on the rows it claims
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="ending-dispatcher")

    async def stop(self) -> None:
        """Stop after the delivery in flight (bounded by the hook time limit); what is left waits for a dispatcher."""
        self._stopping = True
        self.store.endings_recorded()  # wake the loop if it waits
        if self._task is None:
            return
        try:
            async with asyncio.timeout(self.hook_timeout_s + 5):
                await asyncio.shield(self._task)
        except TimeoutError:  # its claim lapses and another dispatcher delivers it
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        next_prune = time.monotonic()
        while not self._stopping:
            try:
                await self.deliver_due()
                if time.monotonic() >= next_prune and not self._stopping:
                    next_prune = time.monotonic() + self.prune_every_s
                    await self.prune()
            except Exception:  # e.g. the database briefly away: the next round tries again
                log.exception("the job-end outbox could not be read; trying again")
            if not self._stopping:
                await self.store.wait_for_endings(self.poll_s)

    async def deliver_due(self) -> int:
        """Deliver the endings that are due now (unclaimed, or their claim lapsed); return how many."""
        delivered = 0
        while not self._stopping:
            claimed = await self.store.claim_endings(self.id, self.claim_s)
            if not claimed:
                break
            for ending_id, job_id in claimed:
                await self._deliver(ending_id, job_id)
                delivered += 1
        return delivered

    async def _deliver(self, ending_id: int, job_id: str) -> None:
        job = await self.store.get_job(job_id)
        if job is None:  # nothing to tell anyone about; the row is done with all the same
            log.warning("the job-end outbox names job %s, which is not in the store", job_id)
        else:
            await asyncio.gather(*(self._run(hook, job) for hook in self.hooks))
        if not await self.store.mark_delivered(ending_id, self.id):
            log.warning("job %s: this delivery's claim lapsed and another dispatcher took it over", job_id)

    async def _run(self, hook: FinishHook, job: JobRow) -> None:
        try:
            async with asyncio.timeout(self.hook_timeout_s):
                await hook(job)
        except Exception:  # a hook (webhook, metrics) never takes the others or the dispatcher down
            log.exception("finish hook %s failed for job %s", getattr(hook, "__qualname__", hook), job.id)

    async def prune(self) -> None:
        """Drop old jobs' stored events and old delivered rows (one replica at a time)."""
        pruned = await self.store.prune_outbox(EVENTS_KEPT_S, DELIVERED_KEPT_S)
        if pruned is not None and any(pruned):
            log.info("pruned %s stored event(s) of jobs ended long ago and %s delivered ending(s)", *pruned)
