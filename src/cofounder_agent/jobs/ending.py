"""What happens when a job ends, whoever ended it: the worker, a cancel from the API, a restart."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from cofounder_agent.jobs.events import Queued, ended
from cofounder_agent.jobs.ports import BlobStore, EventBus
from cofounder_agent.jobs.store import Store
from cofounder_agent.jobs.tables import JobRow

log = logging.getLogger(__name__)

# Called with the finished job row: webhooks and metrics hang here.
FinishHook = Callable[[JobRow], Awaitable[None]]


class JobEnding:
    """Drops a finished job's unreferenced pictures, sends its last event, runs the finish hooks."""

    def __init__(self, store: Store, bus: EventBus, files: BlobStore, hooks: list[FinishHook] | None = None) -> None:
        self.store, self.bus, self.files = store, bus, files
        self.hooks = hooks or []

    async def finished(self, job: JobRow) -> None:
        """Drop pictures its results do not name; announce its end: the last event, then the hooks."""
        referenced = {*job.image_ids, *(i for r in job.results for i in r.get("intermediate_ids", []))}
        try:  # e.g. a cut-short result's pictures; a failure here must not hide the job's end
            await self.store.prune_unreferenced(job.id, referenced, self.files)
        except Exception:
            log.exception("could not drop the unreferenced pictures of job %s", job.id)
        self.bus.publish(ended(job))
        self.bus.ended(job.id)
        for hook in self.hooks:
            try:
                await hook(job)
            except Exception:  # a hook (webhook, metrics) never takes the worker down
                log.exception("finish hook failed for job %s", job.id)

    async def announce_positions(self) -> None:
        """Tell the event streams of queued jobs their new place in the queue."""
        positions = await self.store.queued_positions(self.bus.subscribed())
        for job_id, position in positions.items():
            self.bus.publish(Queued(job_id=job_id, position=position))
