"""A job's timeout counts only its own time on the engine, and a timed-out job frees the engine."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cofounder_agent.contract.checks import GenerationCancelled
from cofounder_agent.contract.control import JobControl
from cofounder_agent.contract.params import GenerationParams
from cofounder_agent.jobs.resolve import resolve_recipe
from cofounder_agent.schemas.jobs import JobCreate
from cofounder_agent.services.image_service import ImageService
from conftest import LIMIT_S, in_process_worker, make_settings, running_server, wait_job, wait_ready

SMALL = GenerationParams(prompt="a kite", seed=1, width=64, height=64, steps=5)


async def _ready(tmp_path: Path, **overrides: Any) -> ImageService:
    images = ImageService(make_settings(tmp_path, **overrides))
    images.start()
    assert await images.wait_ready()
    return images


async def test_the_clock_runs_only_while_the_job_is_on_the_engine(tmp_path: Path) -> None:
    images = await _ready(tmp_path)
    holding, release = threading.Event(), threading.Event()

    def hold(stage: str, step: int, total: int) -> None:  # the first job keeps the engine busy
        holding.set()
        release.wait(120)

    try:
        first = asyncio.create_task(images.generate(SMALL, hold))
        assert await asyncio.to_thread(holding.wait, 120)
        control = JobControl(budget_s=600)
        queued = asyncio.create_task(images.generate(SMALL, None, False, control))
        await asyncio.sleep(0.5)  # it waits behind the first job all this time
        assert not queued.done() and control.engine_s == 0
        release.set()
        await first
        assert (await queued).image.size == (64, 64)
        assert control.engine_s > 0 and control.stopped is None
    finally:
        release.set()
        await images.close()


async def test_a_stopped_job_does_not_start_and_says_why(tmp_path: Path) -> None:
    images = await _ready(tmp_path)
    steps: list[int] = []
    try:
        cancelled = JobControl(budget_s=600)
        cancelled.cancel()
        with pytest.raises(GenerationCancelled):
            await images.generate(SMALL, lambda stage, step, total: steps.append(step), False, cancelled)
        spent = JobControl(budget_s=0.0)  # no engine time at all
        with pytest.raises(GenerationCancelled):
            await images.generate(SMALL, lambda stage, step, total: steps.append(step), False, spent)
        assert (cancelled.stopped, spent.stopped, steps) == ("cancelled", "timed_out", [])
    finally:
        await images.close()


async def test_a_stopped_member_drops_out_of_its_batch(tmp_path: Path) -> None:
    images = await _ready(tmp_path, image_batch_max=2)
    try:
        stopped, running = JobControl(600), JobControl(600)
        stopped.cancel()
        other = GenerationParams(prompt="a lake", seed=2, width=64, height=64, steps=5)
        dropped, kept = await asyncio.gather(
            images.generate(SMALL, None, False, stopped),
            images.generate(other, None, False, running),
            return_exceptions=True,
        )
        assert isinstance(dropped, GenerationCancelled) and stopped.stopped == "cancelled"
        assert not isinstance(kept, BaseException) and kept.batch_size == 2 and running.stopped is None
    finally:
        await images.close()


async def test_a_job_cancelled_before_its_first_step_says_so(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with in_process_worker(settings) as (db, worker):
        body = {"prompt": "a kite", "width": 64, "height": 64, "steps": 6}
        job, _ = await db.add_job(resolve_recipe(JobCreate(**body), settings).model_dump(mode="json"))
        await db.request_cancel(job.id)  # as a cancel that lands just after the worker claimed the job
        worker.start()
        deadline = time.monotonic() + LIMIT_S
        while (row := await db.get_job(job.id)) is not None and row.status in ("queued", "running"):
            assert time.monotonic() < deadline, row.status
            await asyncio.sleep(0.05)
        assert row is not None and (row.status, row.error) == (
            "cancelled",
            "cancelled while running (before its first step)",
        )


def _big_picture() -> bytes:
    buffer = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").resize((1024, 1024)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_a_job_out_of_engine_time_frees_the_engine_for_the_next(tmp_path: Path) -> None:
    from spandrel.architectures.ESRGAN import ESRGAN

    # Timeout 5 s; a small job takes a fraction of a second; the big one's learned x4 upscale
    # of a 1024² picture in 64 px tiles (961 tiles, no denoising step) takes a minute or more on a CPU.
    settings = make_settings(tmp_path, image_job_timeout_s=5.0)
    settings.models_dir.mkdir(parents=True)
    torch.manual_seed(0)
    esrgan = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4)
    save_file(esrgan.state_dict(), str(settings.models_dir / "x4.safetensors"))
    upscale = {"type": "upscale", "factor": 4, "upscaler": "x4.safetensors", "tile": 64, "overlap": 32}
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        wait_ready(url)
        uploaded = client.post("/v1/images", files={"file": ("big.png", _big_picture(), "image/png")})
        assert uploaded.status_code == 201, uploaded.text
        big = client.post(
            "/v1/jobs", json={"prompt": "x", "input_image_ids": [uploaded.json()["id"]], "stages": [upscale]}
        )
        assert big.status_code == 202, big.text
        small = [
            client.post("/v1/jobs", json={"prompt": f"a kite {i}", "seed": i, "width": 64, "height": 64, "steps": 6})
            for i in range(3)
        ]
        assert all(job.status_code == 202 for job in small), [job.text for job in small]
        done = [wait_job(client, job.json()["id"]) for job in [big, *small]]
    assert [job["status"] for job in done[1:]] == ["succeeded"] * 3, [job["error"] for job in done[1:]]
    assert (done[0]["status"], done[0]["error"]) == ("failed", "timed out after 5 s on the engine")
