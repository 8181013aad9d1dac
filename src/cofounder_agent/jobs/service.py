"""JobService: what the routes ask of the job system (submit, look, cancel, wait)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from cofounder_agent.config import Settings
from cofounder_agent.contract.errors import Conflict, InvalidField, NotFound, QueueFull
from cofounder_agent.contract.fields import JOB_FIELDS
from cofounder_agent.jobs.cost import check_cost
from cofounder_agent.jobs.events import Event, EventHub, terminal_event
from cofounder_agent.jobs.recipe_book import RecipeBook
from cofounder_agent.jobs.resolve import check_sizes, resolve_face_models, resolve_recipe
from cofounder_agent.jobs.store import TERMINAL, Store
from cofounder_agent.jobs.tables import JobRow
from cofounder_agent.jobs.worker import Worker
from cofounder_agent.schemas.jobs import ImageResult, JobCreate, JobPublic, JobsPublic
from cofounder_agent.services.egress import EgressPolicy, EgressRefused, check_url


class JobService:
    def __init__(self, store: Store, worker: Worker, hub: EventHub, settings: Settings, recipes: RecipeBook) -> None:
        self.store, self.worker, self.hub, self.settings = store, worker, hub, settings
        self.recipes = recipes
        self.egress = EgressPolicy.parse(settings.image_webhook_allow)  # parsed once, not per submit

    async def submit(
        self, recipe: JobCreate, idempotency_key: str | None = None, fields: Mapping[str, str] = JOB_FIELDS
    ) -> tuple[JobPublic, bool]:
        """Queue a recipe; the bool says whether it is new (False: a repeated Idempotency-Key).

        ``fields`` names job options as the calling endpoint's body does, for its 422s.
        """
        if idempotency_key is not None:
            known = await self.store.find_by_key(idempotency_key)
            if known is not None:
                return await self.public(known), False
        resolved = resolve_recipe(self.recipes.apply(recipe), self.settings, fields)
        # Stages the job wrote itself must have their face model; a named recipe's may go without.
        explicit = range(len(resolved.stages)) if "stages" in recipe.model_fields_set else range(0)
        resolve_face_models(resolved, self.settings, explicit)
        if resolved.board_id is not None and await self.store.get_board(resolved.board_id) is None:
            raise InvalidField("board_id", "no board with this id")
        for index, stage in enumerate(resolved.stages):
            for name, file in stage.model_files().items():
                if not (self.settings.models_dir / file).is_file():
                    raise InvalidField(f"stages.{index}.{name}", "no such file in the models dir")
        for index, stage in enumerate(resolved.stages):
            for name, image_id in stage.image_inputs().items():
                if await self.store.get_image(image_id) is None:
                    raise InvalidField(f"stages.{index}.{name}", "no image with this id")
        sizes = [(resolved.width, resolved.height)] if not resolved.input_image_ids else []
        for index, image_id in enumerate(resolved.input_image_ids):
            row = await self.store.get_image(image_id)
            if row is None:
                raise InvalidField(f"input_image_ids.{index}", "no image with this id")
            sizes.append((row.width, row.height))
        check_sizes(resolved, sizes)
        check_cost(resolved, sizes, self.settings.image_max_job_cost, fields)
        if resolved.callback_url is not None:
            try:
                await check_url(str(resolved.callback_url), self.egress)
            except EgressRefused as exc:
                raise InvalidField("callback_url", exc.reason) from None
        try:
            job, new = await self.store.add_job(
                resolved.model_dump(mode="json"),
                priority=resolved.priority,
                idempotency_key=idempotency_key,
                callback_url=str(resolved.callback_url) if resolved.callback_url else None,
                board_id=resolved.board_id,
                max_queued=self.settings.image_max_queue,
            )
        except QueueFull:
            raise QueueFull(
                f"the queue holds its maximum of {self.settings.image_max_queue} jobs; retry later",
                retry_after=await self._retry_after(),
            ) from None
        view = await self.public(job)
        if new:
            self.hub.publish(job.id, {"type": "queued", "job_id": job.id, "position": view.queue_position})
            self.worker.wake()
        return view, new

    async def _retry_after(self) -> int:
        # About how long until a slot frees up: the recent mean run time, within sane bounds.
        mean = await self.store.average_seconds()
        return max(1, min(300, round(mean))) if mean else 5

    async def public(self, job: JobRow, position: int | None = None) -> JobPublic:
        """The job as clients see it, with live progress while it runs (``position``: known already)."""
        view = JobPublic(
            id=job.id,
            status=job.status,
            priority=job.priority,
            attempts=job.attempts,
            error=job.error,
            image_ids=job.image_ids,
            results=[ImageResult.model_validate(r) for r in job.results],
            recipe=job.recipe,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            seconds=job.seconds,
        )
        if job.status == "queued":
            view.queue_position = position if position is not None else await self.store.queue_position(job)
        elif job.status == "succeeded":
            view.progress = 1.0
        live = self.worker.live.get(job.id)
        if live is not None and job.status == "running":
            view.stage, view.step, view.total_steps = live.stage, live.step, live.stage_total
            view.progress, view.eta_s = live.progress, live.eta_s
        return view

    async def get_row(self, job_id: str) -> JobRow:
        job = await self.store.get_job(job_id)
        if job is None:
            raise NotFound("job", "job_id")
        return job

    async def get(self, job_id: str) -> JobPublic:
        return await self.public(await self.get_row(job_id))

    async def list(self, status: str | None, limit: int, offset: int) -> JobsPublic:
        rows, total = await self.store.list_jobs(status, limit, offset)
        # A fixed number of queries per page: the queued rows' positions in one (not one per row).
        positions = await self.store.queued_positions([row.id for row in rows if row.status == "queued"])
        # A job claimed between the two reads is no longer queued: it was next, position 0.
        views = [await self.public(row, positions.get(row.id, 0)) for row in rows]
        return JobsPublic(data=views, count=total)

    async def cancel(self, job_id: str, wait_s: float = 10.0) -> JobPublic:
        """Cancel: a queued job never starts; a running one stops at its next denoising step."""
        job = await self.get_row(job_id)
        if job.status in TERMINAL:
            raise Conflict(f"the job already {job.status}", code="job_finished", field="job_id")
        cancelled = await self.store.cancel_if_queued(job_id, "cancelled before it started")
        if cancelled is not None:
            await self.worker.finished(cancelled)
            await self.worker.announce_positions()  # the jobs behind it moved up
            return await self.public(cancelled)
        self.worker.request_cancel(job_id)
        return await self.public(await self.wait(job_id, wait_s))

    async def wait(self, job_id: str, within_s: float | None = None) -> JobRow:
        """Wait until the job ends (or ``within_s`` passes); return its latest row."""
        queue = self.hub.subscribe(job_id)
        try:
            job = await self.get_row(job_id)
            if job.status not in TERMINAL:
                try:
                    async with asyncio.timeout(within_s):
                        while (await queue.get())["type"] not in TERMINAL:
                            pass
                except TimeoutError:
                    pass
            return await self.get_row(job_id)
        finally:
            self.hub.unsubscribe(job_id, queue)

    async def events(self, job: JobRow) -> AsyncIterator[Event]:
        """The job's events from now until it ends, starting with its current state."""
        queue = self.hub.subscribe(job.id)  # before reading the state: no event falls in between
        try:
            current = await self.get_row(job.id)
            view = await self.public(current)
            if current.status in TERMINAL:
                yield terminal_event(current)
                return
            if current.status == "queued":
                yield {"type": "queued", "job_id": job.id, "position": view.queue_position}
            else:
                yield {"type": "running", "job_id": job.id, "stage": view.stage, "progress": view.progress}
            while True:
                event = await queue.get()
                yield event
                if event["type"] in TERMINAL:
                    return
        finally:
            self.hub.unsubscribe(job.id, queue)
