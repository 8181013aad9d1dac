"""The job logic against a fake engine (PIL pictures, no torch): stages, intermediates, cancel, failure."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from cofounder_agent.config import Settings
from cofounder_agent.contract.checks import StepCallback
from cofounder_agent.contract.control import JobControl
from cofounder_agent.contract.params import GenerationParams, GenerationResult, StageRecord
from cofounder_agent.contract.stage import StageOutput, StageReport, StageSpec
from cofounder_agent.jobs.bus import Delivered, LocalEventBus, Subscription
from cofounder_agent.jobs.ending import JobEnding
from cofounder_agent.jobs.recipe_book import RecipeBook
from cofounder_agent.jobs.service import JobService
from cofounder_agent.jobs.store import Store, sqlite_url
from cofounder_agent.jobs.tables import JobRow
from cofounder_agent.jobs.worker import Worker, build_worker
from cofounder_agent.logging_setup import json_formatter
from cofounder_agent.schemas.jobs import JobCreate
from cofounder_agent.services.image_service import EngineStatus
from cofounder_agent.storage import ImageStore
from conftest import LIMIT_S, make_settings

BASE: dict[str, Any] = {"prompt": "a kite", "width": 64, "height": 64, "steps": 4, "refiner": {"mode": "none"}}
TWO_STAGES = [{"type": "refine", "strength": 0.5, "steps": 4}, {"type": "upscale", "factor": 2}]


class FakeEngine:
    """Each step calls the job's guarded callback, as the real engine does; pictures are plain colours."""

    def __init__(self) -> None:
        self.status = EngineStatus(state="ready", is_tiny=True)
        self.fail_stage: str | None = None
        self.hold_at: tuple[str, int] | None = None  # (stage, step) where a run waits for ``resume``
        self.holding = asyncio.Event()
        self.resume = asyncio.Event()
        self.control: JobControl | None = None  # the latest run's

    async def wait_ready(self) -> bool:
        return True

    async def _steps(self, stage: str, total: int, on_step: StepCallback | None, control: JobControl | None) -> None:
        self.control = control
        guarded = control.guard(on_step) if control is not None else on_step
        for step in range(1, total + 1):
            if control is not None:
                control.check()
            if self.hold_at == (stage, step):
                self.holding.set()
                await self.resume.wait()
            if guarded is not None:
                guarded(stage, step, total)
            await asyncio.sleep(0)

    async def generate(
        self,
        params: GenerationParams,
        on_step: StepCallback | None = None,
        keep_base: bool = False,
        control: JobControl | None = None,
    ) -> GenerationResult:
        await self._steps("base", params.steps, on_step, control)
        picture = Image.new("RGB", (params.width, params.height), (params.seed or 0) % 256)
        return GenerationResult(image=picture, params=params, stages=[StageRecord("base", 0.25, steps=params.steps)])

    async def run_stage(
        self,
        spec: StageSpec,
        image: Image.Image,
        params: GenerationParams,
        index: int,
        on_step: StepCallback | None = None,
        inputs: Mapping[str, Image.Image | None] | None = None,
        control: JobControl | None = None,
    ) -> StageOutput:
        await self._steps(spec.type, 2, on_step, control)
        if spec.type == self.fail_stage:
            raise RuntimeError(f"{spec.type} broke")
        scale = 2 if spec.type == "upscale" else 1
        out = image.resize((image.width * scale, image.height * scale))
        return StageOutput(out, record=StageReport(index=index, spec=spec.model_dump(), outcome="ok", seconds=0.01))


@dataclass
class Rig:
    settings: Settings
    store: Store
    bus: LocalEventBus
    files: ImageStore
    engine: FakeEngine
    worker: Worker
    service: JobService

    async def submit(self, **body: Any) -> tuple[JobRow, Subscription]:
        view, _ = await self.service.submit(JobCreate(**body))
        job = await self.store.get_job(view.id)
        assert job is not None
        return job, await self.bus.subscribe(job.id, after=0)

    async def until_end(self, subscription: Subscription) -> list[Delivered]:
        seen = list(subscription.replayed)
        async with asyncio.timeout(LIMIT_S):
            while seen[-1:] == [] or seen[-1].event.type not in ("succeeded", "failed", "cancelled"):
                seen.append(await subscription.get())
        return seen


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    settings = make_settings(tmp_path)
    store = Store(sqlite_url(settings.image_data_dir))
    await store.init()
    bus, files, engine = LocalEventBus(), ImageStore(settings.image_data_dir), FakeEngine()
    ending = JobEnding(store, bus, files)
    worker = build_worker(store, bus, engine, files, ending, settings)
    service = JobService(store, bus, ending, settings, RecipeBook(tmp_path / "recipes"))
    worker.start()
    try:
        yield Rig(settings, store, bus, files, engine, worker, service)
    finally:
        await worker.stop()
        await store.close()


def _types(events: list[Delivered]) -> list[str]:
    return [d.event.type for d in events]


async def test_stages_keep_their_intermediates_and_say_so(rig: Rig) -> None:
    job, events = await rig.submit(**BASE, seed=7, stages=TWO_STAGES, keep_intermediates=True)
    seen = await rig.until_end(events)
    done = await rig.store.get_job(job.id)
    assert done is not None and done.status == "succeeded", done and done.error
    (result,) = done.results
    # The generated picture and the refine stage's; the last stage's picture is the result.
    assert len(result["intermediate_ids"]) == 2 and done.image_ids == [result["image_id"]]
    assert [s["outcome"] for s in result["recipe_stages"]] == ["ok", "ok"]
    assert set(result) == {
        *("image_id", "variation_ids", "intermediate_ids", "seed", "refiner_applied"),
        *("refiner_fallback_reason", "timings", "stages", "recipe_stages"),
    }
    assert _types(seen).count("stage_done") == 2 and _types(seen)[-1] == "succeeded"
    final = [d.event.payload() for d in seen if d.event.type == "image" and "intermediate" not in d.event.payload()]
    assert final == [{"type": "image", "job_id": job.id, **result}]
    for image_id in result["intermediate_ids"]:
        row = await rig.store.get_image(image_id)
        assert row is not None and row.intermediate and rig.files.find(image_id) is not None
    picture = rig.files.open_rgb(result["image_id"])
    assert picture is not None and picture.size == (128, 128)  # upscaled 2x
    # Numbered in order, from 1, without gaps.
    assert [d.seq for d in seen] == list(range(1, len(seen) + 1))


async def test_streamed_intermediates_are_deleted_once_replaced(rig: Rig) -> None:
    job, events = await rig.submit(**BASE, stages=TWO_STAGES, stream_intermediates=True)
    seen = await rig.until_end(events)
    done = await rig.store.get_job(job.id)
    assert done is not None and done.status == "succeeded"
    announced = [d.event.payload()["image_id"] for d in seen if d.event.payload().get("intermediate")]
    deleted = [d.event.payload()["image_id"] for d in seen if d.event.type == "image_deleted"]
    assert len(announced) == 2 and sorted(deleted) == sorted(announced)
    assert done.results[0]["intermediate_ids"] == []
    for image_id in announced:
        assert await rig.store.get_image(image_id) is None and rig.files.find(image_id) is None


async def test_a_refined_input_names_its_source(rig: Rig) -> None:
    stored = rig.files.save_png(Image.new("RGB", (64, 64), (9, 9, 9)), {})
    from cofounder_agent.jobs.tables import ImageRow

    await rig.store.add_image(ImageRow(id=stored.id, media_type="image/png", width=64, height=64, source="upload"))
    job, events = await rig.submit(prompt="x", input_image_ids=[stored.id], stages=TWO_STAGES[:1])
    await rig.until_end(events)
    done = await rig.store.get_job(job.id)
    assert done is not None and done.status == "succeeded", done and done.error
    (result,) = done.results
    assert result["input_image_id"] == stored.id and "timings" not in result and result["refiner_applied"] is False


async def test_a_failing_stage_fails_the_job_with_the_reason(rig: Rig) -> None:
    rig.engine.fail_stage = "upscale"
    job, events = await rig.submit(**BASE, stages=TWO_STAGES, keep_intermediates=True)
    seen = await rig.until_end(events)
    done = await rig.store.get_job(job.id)
    assert done is not None and (done.status, done.error) == ("failed", "RuntimeError: upscale broke")
    assert seen[-1].event.payload() == {"type": "failed", "job_id": job.id, "error": done.error, "image_ids": []}
    # Nothing the unfinished result stored is left behind.
    assert await rig.store.intermediate_ids(job.id) == []


async def test_a_cancel_from_the_api_stops_the_running_job(rig: Rig) -> None:
    rig.engine.hold_at = ("base", 3)
    job, events = await rig.submit(**BASE)
    async with asyncio.timeout(LIMIT_S):
        await rig.engine.holding.wait()
    running = await rig.service.get(job.id)
    assert running.status == "running"
    cancelling = asyncio.create_task(rig.service.cancel(job.id, wait_s=LIMIT_S))
    control = rig.engine.control
    assert control is not None  # the worker heard the cancel: the job's control says stop
    assert await asyncio.to_thread(control.cancel_flag.wait, LIMIT_S)
    assert await rig.store.cancel_requested(job.id)
    rig.engine.resume.set()
    view = await cancelling
    assert (view.status, view.error) == ("cancelled", "cancelled while running (base step 2)")
    seen = await rig.until_end(events)
    assert "cancel_requested" in _types(seen) and _types(seen)[-1] == "cancelled"


async def test_progress_is_read_from_the_store(rig: Rig) -> None:
    rig.engine.hold_at = ("refine", 2)
    job, _ = await rig.submit(**BASE, stages=TWO_STAGES[:1])
    async with asyncio.timeout(LIMIT_S):
        await rig.engine.holding.wait()
    # Stage changes are written at once: the refine stage's first step shows up.
    deadline = time.monotonic() + LIMIT_S
    while (view := await rig.service.get(job.id)).stage != "refine":
        assert time.monotonic() < deadline, view
        await asyncio.sleep(0.01)
    assert (view.step, view.total_steps) == (1, 2) and 0 < view.progress <= 1
    rig.engine.resume.set()


async def test_each_stored_image_and_the_end_are_logged(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cofounder_agent.jobs.runner")
    job, events = await rig.submit(**BASE, seed=11, num_images=2, stages=[{"type": "upscale", "factor": 2}])
    await rig.until_end(events)
    done = await rig.store.get_job(job.id)
    assert done is not None and done.status == "succeeded"
    lines = [r for r in caplog.records if r.name == "cofounder_agent.jobs.runner"]
    images = [r for r in lines if r.getMessage().startswith("image ")]
    assert [r.__dict__["image_id"] for r in images] == [r["image_id"] for r in done.results]
    timings = {"base_s": 0.25, "total_s": 0.25, "stages.0.upscale_s": 0.01}
    for record, seed in zip(images, (11, 12), strict=True):
        fields = {key: record.__dict__[key] for key in ("job_id", "seed", "width", "height", "timings")}
        assert fields == {"job_id": job.id, "seed": seed, "width": 128, "height": 128, "timings": timings}
        image_id = record.__dict__["image_id"]
        assert record.getMessage() == (
            f"image {image_id} stored: seed {seed}, 128x128, base_s 0.25 s, total_s 0.25 s, stages.0.upscale_s 0.01 s"
        )
    (end,) = [r for r in lines if r.getMessage().startswith("job succeeded")]
    assert end.__dict__["status"] == "succeeded" and end.__dict__["images"] == 2
    assert end.__dict__["duration_s"] >= end.__dict__["engine_s"] >= 0
    # IMAGE_LOG_FORMAT=json: the same fields as keys.
    logged = json.loads(json_formatter().format(images[0]))
    assert {key: logged[key] for key in ("job_id", "seed", "width", "height", "timings")} == {
        "job_id": job.id,
        "seed": 11,
        "width": 128,
        "height": 128,
        "timings": timings,
    }
    assert "job" not in logged
