"""JobService: what the routes ask of the job system (submit, look, cancel, wait)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Mapping

from cofounder_agent.config import Settings
from cofounder_agent.contract.errors import Conflict, IdempotencyKeyReused, InvalidField, NotFound, QueueFull
from cofounder_agent.contract.fields import JOB_FIELDS
from cofounder_agent.contract.params import batch_key
from cofounder_agent.jobs.bus import Delivered
from cofounder_agent.jobs.cost import check_cost
from cofounder_agent.jobs.ending import JobEnding
from cofounder_agent.jobs.events import CancelRequested, Ended, JobEvent, Progress, Queued, Running, ended
from cofounder_agent.jobs.ports import EventBus
from cofounder_agent.jobs.recipe_book import RecipeBook
from cofounder_agent.jobs.resolve import check_sizes, job_params, resolve_face_models, resolve_recipe
from cofounder_agent.jobs.store import TERMINAL, Store
from cofounder_agent.jobs.tables import JobRow
from cofounder_agent.schemas.jobs import ImageResult, JobCreate, JobPublic, JobsPublic
from cofounder_agent.services.egress import EgressPolicy, EgressRefused, check_url


class JobService:
    def __init__(self, store: Store, bus: EventBus, ending: JobEnding, settings: Settings, recipes: RecipeBook) -> None:
        self.store, self.bus, self.ending, self.settings = store, bus, ending, settings
        self.recipes = recipes
        self.egress = EgressPolicy.parse(settings.image_webhook_allow)  # parsed once, not per submit

    async def submit(
        self,
        recipe: JobCreate,
        idempotency_key: str | None = None,
        fields: Mapping[str, str] = JOB_FIELDS,
        request_hash: str | None = None,
    ) -> tuple[JobPublic, bool]:
        """Queue a recipe; the bool says whether it is new (False: a repeated Idempotency-Key).

        ``fields`` names job options as the calling endpoint's body does, for its 422s.
        ``request_hash`` stands for the request a key is used with (default: the recipe's, as
        sent); the same key with another request is refused.
        """
        if idempotency_key is not None:
            request_hash = request_hash or fingerprint(recipe.model_dump(mode="json"))
            known = await self.store.find_by_key(idempotency_key)
            if known is not None:
                _same_request(known, request_hash)
                return await self.public(known), False
        resolved = resolve_recipe(self.recipes.apply(recipe), self.settings, fields)
        # Stages the job wrote itself must have their face model; a named recipe's may go without.
        explicit = range(len(resolved.stages)) if "stages" in recipe.model_fields_set else range(0)
        resolve_face_models(resolved, self.settings, explicit)
        sizes = await self._check_references(resolved)
        check_sizes(resolved, sizes)
        check_cost(resolved, sizes, self.settings.image_max_job_cost, fields)
        await self._check_callback(resolved)
        try:
            job, new = await self.store.add_job(
                resolved.model_dump(mode="json"),
                priority=resolved.priority,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                callback_url=str(resolved.callback_url) if resolved.callback_url else None,
                board_id=resolved.board_id,
                max_queued=self.settings.image_max_queue,
                batch_key=_batch_key(resolved),
                # Published at once: a worker must not announce "started" before it.
                on_queued=lambda job, position: self.bus.publish(Queued(job_id=job.id, position=position)),
            )
        except QueueFull:
            raise QueueFull(
                f"the queue holds its maximum of {self.settings.image_max_queue} jobs; retry later",
                retry_after=await self._retry_after(),
            ) from None
        if not new:  # another request with the key was stored between our look and our insert
            _same_request(job, request_hash)
        return await self.public(job), new

    async def _check_references(self, resolved: JobCreate) -> list[tuple[int, int]]:
        """Check the board, model files and pictures the recipe names; return its pictures' sizes."""
        if resolved.board_id is not None and await self.store.get_board(resolved.board_id) is None:
            raise InvalidField("board_id", f"no such board {resolved.board_id} (GET /v1/boards lists them)")
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
        return sizes

    async def _check_callback(self, resolved: JobCreate) -> None:
        if resolved.callback_url is not None:
            try:
                await check_url(str(resolved.callback_url), self.egress)
            except EgressRefused as exc:
                raise InvalidField("callback_url", exc.reason) from None

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
            attempt_workers=list(job.attempt_workers or []),
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
        elif job.status == "running" and job.progress is not None:
            live = Progress.model_validate(job.progress)  # the worker's latest record
            view.stage, view.step, view.total_steps = live.stage, live.step, live.total
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
            await self.ending.finished(cancelled)
            await self.ending.announce_positions()  # the jobs behind it moved up
            return await self.public(cancelled)
        # Running (or claimed a moment ago): the worker stops it at its next step.
        if await self.store.request_cancel(job_id):
            self.bus.publish(CancelRequested(job_id=job_id))
        return await self.public(await self.wait(job_id, wait_s))

    async def wait(self, job_id: str, within_s: float | None = None) -> JobRow:
        """Wait until the job ends (or ``within_s`` passes); return its latest row."""
        with await self.bus.subscribe(job_id) as subscription:
            job = await self.get_row(job_id)
            if job.status not in TERMINAL:
                try:
                    async with asyncio.timeout(within_s):
                        while not isinstance((await subscription.get()).event, Ended):
                            pass
                except TimeoutError:
                    pass
            return await self.get_row(job_id)

    async def events(self, job: JobRow, after: int | None = None) -> AsyncIterator[Delivered]:
        """The job's events until it ends, numbered: after ``after`` when the bus still has them,
        else starting with its current state."""
        # Subscribed before reading the state: no event falls in between.
        with await self.bus.subscribe(job.id, after) as subscription:
            current = await self.get_row(job.id)
            if subscription.complete and after is not None:
                backlog = subscription.replayed
                if current.status in TERMINAL and not any(isinstance(d.event, Ended) for d in backlog):
                    backlog = [*backlog, Delivered(subscription.last_seq, ended(current))]  # its log is gone
            else:
                backlog = [Delivered(subscription.last_seq, await self._now(current))]
            for delivered in backlog:
                if isinstance(delivered.event, CancelRequested):
                    continue
                yield delivered
                if isinstance(delivered.event, Ended):
                    return
            while True:
                delivered = await subscription.get()
                if isinstance(delivered.event, CancelRequested):
                    continue  # the worker's signal, not news for the client
                yield delivered
                if isinstance(delivered.event, Ended):
                    return

    async def _now(self, job: JobRow) -> JobEvent:
        """The event that tells where the job is now."""
        if job.status in TERMINAL:
            return ended(job)
        view = await self.public(job)
        if job.status == "queued":
            return Queued(job_id=job.id, position=view.queue_position)
        return Running(job_id=job.id, stage=view.stage, progress=view.progress)


def _batch_key(recipe: JobCreate) -> str | None:
    """The engine's batch key of a job's first generation, as text; None for jobs that refine stored pictures."""
    if recipe.input_image_ids:
        return None
    return json.dumps(batch_key(job_params(recipe)[0], recipe.keep_intermediates))


def fingerprint(request: object) -> str:
    """sha256 of a request's canonical JSON (sorted keys): what an Idempotency-Key is compared by."""
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _same_request(job: JobRow, request_hash: str | None) -> None:
    """Refuse a key reused with another request; a job stored before hashes (None) is trusted as before."""
    if job.request_hash is not None and request_hash is not None and job.request_hash != request_hash:
        raise IdempotencyKeyReused(job.id)
