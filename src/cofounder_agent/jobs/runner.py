"""Running one job: each image's generation (or stored input), then the recipe's stages, on the engine."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cofounder_agent.contract.checks import GenerationCancelled
from cofounder_agent.contract.control import JobControl
from cofounder_agent.contract.params import GenerationParams
from cofounder_agent.contract.stage import StageReport
from cofounder_agent.jobs.events import ResultImage, StageDone, StageStarted, Started, Step
from cofounder_agent.jobs.ports import BlobStore, Engine, JobQueue
from cofounder_agent.jobs.progress import Live, ProgressWriter
from cofounder_agent.jobs.recorder import JobOutcome, Recorder
from cofounder_agent.jobs.resolve import denoising_steps, job_params, stored_recipe
from cofounder_agent.jobs.tables import JobRow
from cofounder_agent.logging_setup import job_context
from cofounder_agent.schemas.jobs import JobCreate
from cofounder_agent.services.metadata import generation_metadata

if TYPE_CHECKING:
    from PIL.Image import Image

    from cofounder_agent.contract.checks import StepCallback

log = logging.getLogger(__name__)
# A stage record's headline keys, streamed in its stage_done event.
BRIEF = ("outcome", "detail", "seconds", "scores", "passes", "threshold_met", "faces", "size")


@dataclass
class _Source:
    """What a result starts from: a fresh generation or a stored picture, and what it says of itself."""

    picture: Image
    params: GenerationParams
    metadata: dict[str, Any]
    facts: dict[str, Any]  # the result's keys that depend on the source
    intermediate_ids: list[str] = field(default_factory=list)
    transient: list[str] = field(default_factory=list)  # streamed pictures a later stage replaces


@dataclass
class _Run:
    """One job's run: its recipe, engine hooks and progress."""

    job: JobRow
    recipe: JobCreate
    control: JobControl
    on_step: StepCallback
    live: Live


class JobRunner:
    """Runs a job's images and stages against the engine port; returns how it ended."""

    def __init__(
        self, engine: Engine, files: BlobStore, recorder: Recorder, queue: JobQueue, budget_s: float | None
    ) -> None:
        self.engine, self.files, self.recorder, self.queue, self.budget_s = engine, files, recorder, queue, budget_s

    @property
    def _made_by(self) -> str:
        """The image rows' ``source``: which model made the pictures."""
        return "tiny" if self.engine.status.is_tiny else "sdxl"

    async def run(self, job: JobRow, control: JobControl) -> JobOutcome:
        """Run ``job`` under ``control`` (its cancel flag and engine-time budget)."""
        recipe = stored_recipe(job.recipe)
        params_list = job_params(recipe)
        generates = not recipe.input_image_ids
        live = Live(total_steps=sum(denoising_steps(p, recipe.stages, generates) for p in params_list))
        writer = ProgressWriter(self.queue, job.id, job.worker_id)
        loop = asyncio.get_running_loop()

        def on_step(stage: str, step: int, total: int) -> None:  # runs on the engine thread, after the check
            loop.call_soon_threadsafe(self._progress, job.id, live, writer, stage, step, total)

        run = _Run(job, recipe, control, on_step, live)
        self.recorder.publish(Started(job_id=job.id, attempt=job.attempts))
        outcome = JobOutcome("succeeded")
        began = time.monotonic()
        with job_context(job.id):
            log.info("job started (attempt %s, %s image(s))", job.attempts, len(params_list))
            try:
                for index, params in enumerate(params_list):
                    outcome.results.append(await self._image(run, index, params))
                    self.recorder.result(job, outcome.results[-1])
            except GenerationCancelled:
                if control.stopped == "timed_out":
                    outcome.status, outcome.error = "failed", f"timed out after {self.budget_s:g} s on the engine"
                else:
                    where = f"{live.stage} step {live.step}" if live.stage is not None else "before its first step"
                    outcome.status, outcome.error = "cancelled", f"cancelled while running ({where})"
            except Exception as exc:
                log.exception("job failed")
                outcome.status, outcome.error = "failed", f"{type(exc).__name__}: {exc}"
            finally:
                await writer.close()
            outcome.engine_s = control.engine_s
            _log_end(outcome, time.monotonic() - began)
        return outcome

    def _progress(self, job_id: str, live: Live, writer: ProgressWriter, stage: str, step: int, total: int) -> None:
        if step == 1:  # the first step of a stage announces the stage
            self.recorder.publish(StageStarted(job_id=job_id, stage=stage, total=total))
        new_stage = live.stage != stage or step == 1
        live.stage, live.step, live.stage_total = stage, step, total
        live.steps_done += 1
        self.recorder.publish(
            Step(
                job_id=job_id,
                stage=stage,
                step=step,
                total=total,
                progress=round(live.progress, 4),
                eta_s=live.eta_s,
            )
        )
        writer.note(live.record(), urgent=new_stage)

    async def _image(self, run: _Run, index: int, params: GenerationParams) -> ResultImage:
        """One result: its source picture through the recipe's stages, stored with its rows."""
        source = await self._source(run, index, params)
        finals, records = await self._stages(run, source)
        metadata = {**source.metadata, "recipe_stages": _dumped(records)}
        final_ids = await self.recorder.finals(run.job, finals, metadata, self._made_by)
        await self.recorder.drop(run.job, source.transient)
        result = ResultImage(
            image_id=final_ids[0],
            variation_ids=final_ids if len(final_ids) > 1 else [],
            intermediate_ids=source.intermediate_ids,
            recipe_stages=records,
            **source.facts,
        )
        _log_image(run.job.id, result, finals[0].size)
        return result

    async def _source(self, run: _Run, index: int, params: GenerationParams) -> _Source:
        """A stored input picture (an upload, an earlier result), or a new generation and its intermediates."""
        job, recipe = run.job, run.recipe
        if recipe.input_image_ids:
            image_id = recipe.input_image_ids[index]
            picture = await asyncio.to_thread(self.files.open_rgb, image_id)
            if picture is None:
                raise ValueError(f"input image {image_id} is gone")
            metadata = {"source": "refined", "input_image_id": image_id, "params": asdict(params), "job_id": job.id}
            facts = {"seed": params.seed, "refiner_applied": False, "input_image_id": image_id}
            return _Source(picture, params, metadata, facts)
        result = await self.engine.generate(params, run.on_step, recipe.keep_intermediates, run.control)
        metadata = {**generation_metadata(result, self.engine.status), "job_id": job.id}
        facts = {
            "seed": result.params.seed,
            "refiner_applied": result.refiner_applied,
            "refiner_fallback_reason": result.refiner_fallback_reason,
            "timings": result.timings,
            "stages": [asdict(s) for s in result.stages],
        }
        source = _Source(result.image, result.params, metadata, facts)
        for stage, picture in result.intermediates:
            source.intermediate_ids.append(
                await self.recorder.intermediate(job, picture, metadata, stage, self._made_by)
            )
        if recipe.stages and (recipe.keep_intermediates or recipe.stream_intermediates):
            # What the two-stage generation made (base, then refiner if one ran): the stages' input.
            generated = await self.recorder.intermediate(job, result.image, metadata, "generated", self._made_by)
            (source.intermediate_ids if recipe.keep_intermediates else source.transient).append(generated)
        return source

    async def _stages(self, run: _Run, source: _Source) -> tuple[list[Image], list[StageReport]]:
        """Each stage in turn; keeps each stage's pictures but the last when asked to.

        Returns the final pictures: one, or each variation of a closing variations stage.
        """
        job, recipe, image = run.job, run.recipe, source.picture
        records: list[StageReport] = []
        # Streaming: each stage's pictures are stored and announced, then dropped once the
        # next stage succeeds (the seed's memory-efficient pipeline); the caller drops the last.
        streaming = recipe.stream_intermediates and not recipe.keep_intermediates
        for index, spec in enumerate(recipe.stages):
            inputs = {
                name: await asyncio.to_thread(self.files.open_rgb, image_id)
                for name, image_id in spec.image_inputs().items()
            }
            out = await self.engine.run_stage(spec, image, source.params, index, run.on_step, inputs, run.control)
            record = out.record or StageReport(index=index, spec=spec.model_dump())
            records.append(record)
            last = index == len(recipe.stages) - 1
            if streaming and record.outcome != "fallback":
                await self.recorder.drop(job, source.transient)
            if recipe.keep_intermediates or streaming:  # every pass of a multi-pass stage; one picture unless last
                pictures = [(f"{spec.type}.{n}", p) for n, p in enumerate(out.passes, 1)]
                if not pictures and not last:
                    pictures = [(spec.type, out.image)]
                for label, picture in pictures:
                    done = {**source.metadata, "recipe_stages": _dumped(records)}
                    kept = await self.recorder.intermediate(job, picture, done, label, self._made_by)
                    (source.transient if streaming else source.intermediate_ids).append(kept)
            brief = {key: value for key, value in _dumped([record])[0].items() if key in BRIEF}
            self.recorder.publish(StageDone(job_id=job.id, index=index, stage=spec.type, **brief))
            image = out.image
            if out.variations:
                return out.variations, records
        return [image], records


def _dumped(records: list[StageReport]) -> list[dict[str, Any]]:
    """Stage records as a picture's metadata JSON keeps them."""
    return [record.model_dump(mode="json") for record in records]


def _stage_timings(result: ResultImage) -> dict[str, float]:
    """Name the seconds of each stage of one result.

    The generation's (``base_s``, ``refiner_s``, ``decode_s``, ``total_s``), then each recipe
    stage's by its place and type (``stages.0.upscale_s``).
    """
    timings = dict(result.timings)
    for record in result.recipe_stages:
        if record.seconds is not None:
            timings[f"stages.{record.index}.{record.spec.get('type', 'stage')}_s"] = round(record.seconds, 4)
    return timings


def _log_image(job_id: str, result: ResultImage, size: tuple[int, int]) -> None:
    """One line per stored result: what an operator needs to find, reproduce and time it."""
    timings = _stage_timings(result)
    fields = {
        "job_id": job_id,
        "image_id": result.image_id,
        "seed": result.seed,
        "width": size[0],
        "height": size[1],
        "timings": timings,
    }
    shown = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timings.items())
    log.info(
        "image %s stored: seed %s, %sx%s%s",
        result.image_id,
        result.seed,
        *size,
        f", {shown}" if shown else "",
        extra=fields,
    )


def _log_end(outcome: JobOutcome, seconds: float) -> None:
    """One line per job end: its status (and why, if it did not succeed), results and times."""
    fields = {"status": outcome.status, "images": len(outcome.results), "duration_s": round(seconds, 3)}
    log.info(
        "job %s%s: %s image(s) in %.2f s (%.2f s on the engine)",
        outcome.status,
        f" ({outcome.error})" if outcome.error else "",
        len(outcome.results),
        seconds,
        outcome.engine_s,
        extra={**fields, "engine_s": round(outcome.engine_s, 3)},
    )
