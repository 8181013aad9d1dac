"""What happens when a job ends, whoever ended it: the worker, a cancel from the API, a restart.

Only this process's part: its pictures and its last event. The finish hooks (webhooks,
metrics) run from the outbox (outbox.py), once per end whichever process ended the job.
"""

from __future__ import annotations

import logging

from cofounder_agent.jobs.events import Queued, ended
from cofounder_agent.jobs.ports import BlobStore, EventBus
from cofounder_agent.jobs.store import Store
from cofounder_agent.jobs.tables import JobRow

log = logging.getLogger(__name__)


class JobEnding:
    """Drops a finished job's unreferenced pictures and sends its last event."""

    def __init__(self, store: Store, bus: EventBus, files: BlobStore) -> None:
        self.store, self.bus, self.files = store, bus, files

    async def finished(self, job: JobRow) -> None:
        """Drop pictures its results do not name; announce its end with the last event."""
        referenced = {*job.image_ids, *(i for r in job.results for i in r.get("intermediate_ids", []))}
        try:  # e.g. a cut-short result's pictures; a failure here must not hide the job's end
            await self.store.prune_unreferenced(job.id, referenced, self.files)
        except Exception:
            log.exception("could not drop the unreferenced pictures of job %s", job.id)
        self.bus.publish(ended(job))
        self.bus.ended(job.id)

    async def announce_positions(self) -> None:
        """Tell the event streams of queued jobs their new place in the queue.

        PostgreSQL: the streams live in the API replicas (a worker process has none), so a
        notification asks each replica's bus to do it for its own (PgEventBus). SQLite: here.
        """
        if self.store.listener is not None:
            await self.store.notify_positions()
            return
        positions = await self.store.queued_positions(self.bus.subscribed())
        for job_id, position in positions.items():
            self.bus.publish(Queued(job_id=job_id, position=position))
