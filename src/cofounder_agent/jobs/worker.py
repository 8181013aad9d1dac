"""The worker: takes queued jobs in order and runs them on the device's engine thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from cofounder_agent.config import Settings
from cofounder_agent.contract.checks import GenerationCancelled
from cofounder_agent.contract.control import JobControl
from cofounder_agent.contract.params import GenerationParams, GenerationResult, batch_key
from cofounder_agent.jobs.events import EventHub, terminal_event
from cofounder_agent.jobs.resolve import denoising_steps, job_params, stored_recipe
from cofounder_agent.jobs.store import Store
from cofounder_agent.jobs.tables import ImageRow, JobRow
from cofounder_agent.logging_setup import job_context
from cofounder_agent.schemas.jobs import JobCreate
from cofounder_agent.services.image_service import ImageService
from cofounder_agent.services.metadata import generation_metadata
from cofounder_agent.storage import ImageStore

log = logging.getLogger(__name__)

# Called with the finished job row: webhooks and metrics hang here.
FinishHook = Callable[[JobRow], Awaitable[None]]
# What a job's engine calls take: its progress callback and its control (cancel flag, budget).
Engine = tuple[Callable[[str, int, int], None], JobControl]


@dataclass
class Live:
    """Progress of the running job, kept in memory (it changes every denoising step)."""

    total_steps: int
    stage: str | None = None
    step: int = 0
    stage_total: int = 0
    steps_done: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def progress(self) -> float:
        return min(1.0, self.steps_done / self.total_steps) if self.total_steps else 0.0

    @property
    def eta_s(self) -> float | None:
        if not self.steps_done:
            return None
        elapsed = time.monotonic() - self.started
        return round(elapsed / self.steps_done * max(0, self.total_steps - self.steps_done), 2)


class Worker:
    """One loop per device; jobs run one after another on the ImageService's engine thread."""

    def __init__(
        self,
        store: Store,
        images: ImageService,
        files: ImageStore,
        hub: EventHub,
        settings: Settings,
        on_finish: list[FinishHook] | None = None,
    ) -> None:
        self.store, self.images, self.files, self.hub, self.settings = store, images, files, hub, settings
        self.on_finish = on_finish or []
        self.live: dict[str, Live] = {}
        self._cancel: dict[str, threading.Event] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._current: set[str] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="job-worker")

    async def stop(self) -> None:
        """Stop at the next denoising step; the interrupted job goes back to the queue."""
        current = set(self._current)
        for flag in self._cancel.values():
            flag.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job_id in current:
            # A clean stop is not the job's fault: it does not use up its one retry.
            await self.store.release(job_id)

    def wake(self) -> None:
        self._wake.set()

    def request_cancel(self, job_id: str) -> None:
        """Ask a running job to stop at its next denoising step (or VAE block, tile, face).

        The flag may be set before the worker registers the job (claimed a moment ago):
        ``_run`` picks up the same flag and stops at the first step.
        """
        self._cancel.setdefault(job_id, threading.Event()).set()

    async def _loop(self) -> None:
        await self.images.wait_ready()  # a failed load still lets jobs run (and fail with the reason)
        while True:
            try:
                self._wake.clear()
                job = await self.store.claim_next()
                if job is None:
                    await self._wake.wait()
                    continue
                # Known as running before the wait for companions: a stop meanwhile releases it.
                self._current = {job.id}
                try:
                    group = [job, *await self._companions(job)]
                    self._current = {j.id for j in group}
                    try:
                        await self.announce_positions()
                    except Exception:  # news for waiting streams; the claimed jobs run regardless
                        log.exception("could not announce queue positions")
                    # Side by side, so their generations meet in the engine's batcher.
                    await asyncio.gather(*(self._run_safely(j) for j in group))
                finally:
                    self._current = set()
            except Exception:  # e.g. "database is locked": the loop must outlive it
                log.exception("worker loop error; retrying in 1 s")
                await asyncio.sleep(1)

    async def _companions(self, job: JobRow) -> list[JobRow]:
        """Queued jobs that can share ``job``'s batched generation (micro-batching), claimed now."""
        key, limit = _batch_key(job), self.settings.image_batch_max - 1
        if limit < 1 or key is None:
            return []
        found: list[JobRow] = []
        try:
            found += await self.store.claim_companions(job, lambda c: _batch_key(c) == key, limit)
            if len(found) < limit and self.settings.image_batch_wait_s > 0:
                await asyncio.sleep(self.settings.image_batch_wait_s)  # a little latency for a fuller batch
                found += await self.store.claim_companions(job, lambda c: _batch_key(c) == key, limit - len(found))
        except Exception:  # the claimed job runs whatever happens here, with what was found
            log.exception("could not gather batch companions for job %s", job.id)
        return found

    async def _run_safely(self, job: JobRow) -> None:
        try:
            await self._run(job)
        except Exception:  # a bug in a job's handling fails that job, not the worker
            log.exception("job %s crashed the worker step", job.id)
            self._cancel.pop(job.id, None)
            self.live.pop(job.id, None)
            failed = await self.store.finish(job.id, "failed", error="internal error; see the server log")
            if failed is not None:
                await self.finished(failed)

    async def announce_positions(self) -> None:
        """Tell the event streams of queued jobs their new place in the queue."""
        positions = await self.store.queued_positions(self.hub.subscribed())
        for job_id, position in positions.items():
            self.hub.publish(job_id, {"type": "queued", "job_id": job_id, "position": position})

    async def _run(self, job: JobRow) -> None:
        recipe = stored_recipe(job.recipe)
        params_list = job_params(recipe)
        # The job's time counts only while its work runs on the engine, not while it waits there.
        budget_s = self.settings.image_job_timeout_s
        control = JobControl(budget_s, self._cancel.setdefault(job.id, threading.Event()))
        generates = not recipe.input_image_ids
        live = self.live[job.id] = Live(
            total_steps=sum(denoising_steps(p, recipe.stages, generates) for p in params_list)
        )
        loop = asyncio.get_running_loop()

        def on_step(stage: str, step: int, total: int) -> None:  # runs on the engine thread, after the check
            loop.call_soon_threadsafe(self._progress, job.id, live, stage, step, total)

        self.hub.publish(job.id, {"type": "started", "job_id": job.id, "attempt": job.attempts})
        results: list[dict[str, Any]] = []
        status, error = "succeeded", None
        with job_context(job.id):
            log.info("job started (attempt %s, %s image(s))", job.attempts, len(params_list))
            try:
                for index, params in enumerate(params_list):
                    if recipe.input_image_ids:
                        image_id = recipe.input_image_ids[index]
                        results.append(await self._refine_input(job, recipe, params, image_id, (on_step, control)))
                    else:
                        result = await self.images.generate(params, on_step, recipe.keep_intermediates, control)
                        results.append(await self._keep(job, recipe, result, (on_step, control)))
                    self.hub.publish(job.id, {"type": "image", "job_id": job.id, **results[-1]})
            except GenerationCancelled:
                if control.stopped == "timed_out":
                    status, error = "failed", f"timed out after {budget_s:g} s on the engine"
                else:
                    where = f"{live.stage} step {live.step}" if live.stage is not None else "before its first step"
                    status, error = "cancelled", f"cancelled while running ({where})"
            except Exception as exc:
                log.exception("job failed")
                status, error = "failed", f"{type(exc).__name__}: {exc}"
            finally:
                self._cancel.pop(job.id, None)
                self.live.pop(job.id, None)
            image_ids = [i for r in results for i in (r["variation_ids"] or [r["image_id"]])]
            finished = await self.store.finish(job.id, status, error=error, image_ids=image_ids, results=results)
            log.info("job %s%s (%.2f s on the engine)", status, f": {error}" if error else "", control.engine_s)
        if finished is not None:
            await self.finished(finished)

    def _progress(self, job_id: str, live: Live, stage: str, step: int, total: int) -> None:
        if step == 1:  # the first step of a stage announces the stage
            self.hub.publish(job_id, {"type": "stage", "job_id": job_id, "stage": stage, "total": total})
        live.stage, live.step, live.stage_total = stage, step, total
        live.steps_done += 1
        self.hub.publish(
            job_id,
            {
                "type": "step",
                "job_id": job_id,
                "stage": stage,
                "step": step,
                "total": total,
                "progress": round(live.progress, 4),
                "eta_s": live.eta_s,
            },
        )

    async def _keep(self, job: JobRow, recipe: JobCreate, result: GenerationResult, engine: Engine) -> dict[str, Any]:
        """Run the recipe's stages on a generated picture; store it, its intermediates and rows."""
        metadata = {**generation_metadata(result, self.images.status), "job_id": job.id}
        intermediate_ids = [
            await self._intermediate(job, picture, metadata, stage) for stage, picture in result.intermediates
        ]
        transient: list[str] = []
        if recipe.stages and (recipe.keep_intermediates or recipe.stream_intermediates):
            # What the two-stage generation made (base, then refiner if one ran): the stages' input.
            generated = await self._intermediate(job, result.image, metadata, "generated")
            (intermediate_ids if recipe.keep_intermediates else transient).append(generated)
        finals, stage_records = await self._stages(
            job, recipe, result.params, result.image, metadata, intermediate_ids, engine, transient
        )
        final_ids = await self._store_finals(job, finals, {**metadata, "recipe_stages": stage_records})
        await self._drop(job, transient)
        return {
            "image_id": final_ids[0],
            "variation_ids": final_ids if len(final_ids) > 1 else [],
            "intermediate_ids": intermediate_ids,
            "seed": result.params.seed,
            "refiner_applied": result.refiner_applied,
            "refiner_fallback_reason": result.refiner_fallback_reason,
            "timings": result.timings,
            "stages": [asdict(s) for s in result.stages],
            "recipe_stages": stage_records,
        }

    async def _refine_input(
        self, job: JobRow, recipe: JobCreate, params: GenerationParams, image_id: str, engine: Engine
    ) -> dict[str, Any]:
        """Run the recipe's stages on a stored picture (an upload, or an earlier result)."""
        picture = await asyncio.to_thread(self.files.open_rgb, image_id)
        if picture is None:
            raise ValueError(f"input image {image_id} is gone")
        metadata = {"source": "refined", "input_image_id": image_id, "params": asdict(params), "job_id": job.id}
        intermediate_ids: list[str] = []
        transient: list[str] = []
        finals, stage_records = await self._stages(
            job, recipe, params, picture, metadata, intermediate_ids, engine, transient
        )
        final_ids = await self._store_finals(job, finals, {**metadata, "recipe_stages": stage_records})
        await self._drop(job, transient)
        return {
            "image_id": final_ids[0],
            "variation_ids": final_ids if len(final_ids) > 1 else [],
            "intermediate_ids": intermediate_ids,
            "seed": params.seed,
            "refiner_applied": False,
            "input_image_id": image_id,
            "recipe_stages": stage_records,
        }

    async def _stages(
        self,
        job: JobRow,
        recipe: JobCreate,
        params: GenerationParams,
        image: Any,
        metadata: dict[str, Any],
        intermediate_ids: list[str],
        engine: Engine,
        transient: list[str],
    ) -> tuple[list[Any], list[dict[str, Any]]]:
        """Each stage in turn; keeps each stage's pictures but the last when asked to.

        Returns the final pictures: one, or each variation of a closing variations stage.
        """
        stage_records: list[dict[str, Any]] = []
        # Streaming: each stage's pictures are stored and announced, then dropped once the
        # next stage succeeds (the seed's memory-efficient pipeline); the caller drops the last.
        streaming = recipe.stream_intermediates and not recipe.keep_intermediates
        for index, spec in enumerate(recipe.stages):
            inputs = {
                name: await asyncio.to_thread(self.files.open_rgb, image_id)
                for name, image_id in spec.image_inputs().items()
            }
            out = await self.images.run_stage(spec, image, params, index, engine[0], inputs, engine[1])
            stage_records.append(out.record)
            last = index == len(recipe.stages) - 1
            if streaming and out.record["outcome"] != "fallback":
                await self._drop(job, transient)
            if recipe.keep_intermediates or streaming:  # every pass of a multi-pass stage; one picture unless last
                pictures = [(f"{spec.type}.{n}", p) for n, p in enumerate(out.passes, 1)]
                if not pictures and not last:
                    pictures = [(spec.type, out.image)]
                for label, picture in pictures:
                    done = {**metadata, "recipe_stages": list(stage_records)}
                    kept = await self._intermediate(job, picture, done, label)
                    (transient if streaming else intermediate_ids).append(kept)
            self.hub.publish(
                job.id,
                {"type": "stage_done", "job_id": job.id, "index": index, "stage": spec.type, **_brief(out.record)},
            )
            image = out.image
            if out.variations:
                return out.variations, stage_records
        return [image], stage_records

    async def _store_finals(self, job: JobRow, finals: list[Any], metadata: dict[str, Any]) -> list[str]:
        ids = []
        for number, picture in enumerate(finals):
            extra = {"variation": number} if len(finals) > 1 else {}
            ids.append(await self._store_image(job, picture, {**metadata, **extra}, intermediate=False))
        return ids

    async def _drop(self, job: JobRow, image_ids: list[str]) -> None:
        """Delete streamed pictures that a later stage made obsolete, and say so."""
        for image_id in image_ids:
            await self.store.delete_image(image_id)
            await asyncio.to_thread(self.files.delete, image_id)
            self.hub.publish(job.id, {"type": "image_deleted", "job_id": job.id, "image_id": image_id})
        image_ids.clear()

    async def _intermediate(self, job: JobRow, picture: Any, metadata: dict[str, Any], stage: str) -> str:
        """Store a picture of an earlier stage, flagged, and say so on the event stream."""
        image_id = await self._store_image(job, picture, {**metadata, "intermediate_stage": stage}, intermediate=True)
        self.hub.publish(
            job.id, {"type": "image", "job_id": job.id, "image_id": image_id, "stage": stage, "intermediate": True}
        )
        return image_id

    async def _store_image(self, job: JobRow, picture: Any, metadata: dict[str, Any], intermediate: bool) -> str:
        stored = await asyncio.to_thread(self.files.save_png, picture, metadata)
        await self.store.add_image(
            ImageRow(
                id=stored.id,
                job_id=job.id,
                board_id=job.board_id,
                media_type=stored.media_type,
                width=stored.width,
                height=stored.height,
                source="tiny" if self.images.status.is_tiny else "sdxl",
                intermediate=intermediate,
            )
        )
        return stored.id

    async def finished(self, job: JobRow) -> None:
        """Drop pictures its results do not name; announce its end: the last event, then the hooks."""
        self._cancel.pop(job.id, None)  # a cancel that raced the job's end leaves no flag behind
        referenced = {*job.image_ids, *(i for r in job.results for i in r.get("intermediate_ids", []))}
        try:  # e.g. a cut-short result's pictures; a failure here must not hide the job's end
            await self.store.prune_unreferenced(job.id, referenced, self.files)
        except Exception:
            log.exception("could not drop the unreferenced pictures of job %s", job.id)
        self.hub.publish(job.id, terminal_event(job))
        for hook in self.on_finish:
            try:
                await hook(job)
            except Exception:  # a hook (webhook, metrics) never takes the worker down
                log.exception("finish hook failed for job %s", job.id)


def _batch_key(job: JobRow) -> tuple[object, ...] | None:
    """The engine's batch key of a job's first generation; None for jobs that refine stored pictures."""
    try:
        recipe = stored_recipe(job.recipe)
    except ValueError:  # a damaged row: it runs (and fails) alone
        return None
    if recipe.input_image_ids:
        return None
    return batch_key(job_params(recipe)[0], recipe.keep_intermediates)


def _brief(record: dict[str, Any]) -> dict[str, Any]:
    """A stage record's headline for the event stream."""
    keys = ("outcome", "detail", "seconds", "scores", "passes", "threshold_met", "faces", "size")
    return {key: record[key] for key in keys if key in record}
