"""Recording a job's work: pictures into the blob store, rows into the store, news onto the bus."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from cofounder_agent.jobs.ending import JobEnding
from cofounder_agent.jobs.events import ImageDeleted, ImageDone, IntermediateStored, JobEvent, ResultImage
from cofounder_agent.jobs.ports import BlobStore, EventBus
from cofounder_agent.jobs.store import Store
from cofounder_agent.jobs.tables import ImageRow, JobRow

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

Status = Literal["succeeded", "failed", "cancelled"]


@dataclass
class JobOutcome:
    """How a job's run ended: its status, the reason when it did not succeed, its results."""

    status: Status
    error: str | None = None
    results: list[ResultImage] = field(default_factory=list)
    engine_s: float = 0.0


class Recorder:
    """Stores what a running job makes and announces it; records the job's end."""

    def __init__(self, store: Store, bus: EventBus, files: BlobStore, ending: JobEnding) -> None:
        self.store, self.bus, self.files, self.ending = store, bus, files, ending

    def publish(self, event: JobEvent) -> None:
        self.bus.publish(event)

    async def intermediate(self, job: JobRow, picture: Image, metadata: dict[str, Any], stage: str, source: str) -> str:
        """Store a picture of an earlier stage, flagged, and say so on the event stream."""
        image_id = await self._store(job, picture, {**metadata, "intermediate_stage": stage}, True, source)
        self.bus.publish(IntermediateStored(job_id=job.id, image_id=image_id, stage=stage))
        return image_id

    async def finals(self, job: JobRow, pictures: list[Image], metadata: dict[str, Any], source: str) -> list[str]:
        """Store a result's final picture (or each variation)."""
        ids = []
        for number, picture in enumerate(pictures):
            extra = {"variation": number} if len(pictures) > 1 else {}
            ids.append(await self._store(job, picture, {**metadata, **extra}, False, source))
        return ids

    async def drop(self, job: JobRow, image_ids: list[str]) -> None:
        """Delete streamed pictures that a later stage made obsolete, and say so."""
        for image_id in image_ids:
            await self.store.delete_image(image_id)
            await asyncio.to_thread(self.files.delete, image_id)
            self.bus.publish(ImageDeleted(job_id=job.id, image_id=image_id))
        image_ids.clear()

    def result(self, job: JobRow, result: ResultImage) -> None:
        self.bus.publish(ImageDone(job_id=job.id, result=result))

    async def finish(self, job: JobRow, outcome: JobOutcome, worker_id: str | None = None) -> JobRow | None:
        """Move the job to its end state with its results; then what every ending does.

        With ``worker_id``, fenced: None when that worker no longer holds the job's lease.
        """
        image_ids = [i for r in outcome.results for i in (r.variation_ids or [r.image_id])]
        results = [r.stored() for r in outcome.results]
        done = await self.store.finish(
            job.id, outcome.status, error=outcome.error, image_ids=image_ids, results=results, worker_id=worker_id
        )
        if done is not None:
            await self.ending.finished(done)
        return done

    async def _store(
        self, job: JobRow, picture: Image, metadata: dict[str, Any], intermediate: bool, source: str
    ) -> str:
        stored = await asyncio.to_thread(self.files.save_png, picture, metadata)
        await self.store.add_image(
            ImageRow(
                id=stored.id,
                job_id=job.id,
                board_id=job.board_id,
                media_type=stored.media_type,
                width=stored.width,
                height=stored.height,
                source=source,
                intermediate=intermediate,
            )
        )
        return stored.id
