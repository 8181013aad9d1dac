"""Micro-batching: compatible generations run as one batch, each equal to its unbatched image."""

from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from cofounder_agent.client import Client
from cofounder_agent.contract.checks import GenerationCancelled
from cofounder_agent.contract.params import GenerationParams, LoadOptions
from cofounder_agent.engine.generate import TwoStageGenerator
from cofounder_agent.engine.models import load_models
from cofounder_agent.jobs.resolve import job_params, stored_recipe
from conftest import LIMIT_S, make_settings, pixels, running_server, wait_ready

# Batched kernels round differently from batch-1 ones; a level or two of 255 at most.
TOLERANCE = 2


@pytest.fixture(scope="module")
def engine() -> TwoStageGenerator:
    return TwoStageGenerator(load_models(LoadOptions(model="tiny")))


def _diff(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max())


def _params(prompt: str, seed: int, **extra: Any) -> GenerationParams:
    return GenerationParams(prompt=prompt, seed=seed, width=64, height=64, steps=20, **extra)


@pytest.mark.parametrize("extra", [{}, {"refiner_mode": "img2img"}, {"negative_prompt": "blurry"}])
def test_a_batch_equals_each_unbatched_image(engine: TwoStageGenerator, extra: dict[str, Any]) -> None:
    batch = [_params("a red castle", 1, **extra), _params("a blue lake", 2, **extra), _params("a fox", 3, **extra)]
    outcomes = engine.generate_batch(batch, [None, None, None])
    for params, outcome in zip(batch, outcomes, strict=True):
        assert not isinstance(outcome, BaseException)
        assert outcome.batch_size == 3 and outcome.params == params
        assert _diff(outcome.image, engine.generate(params).image) <= TOLERANCE
    # The comparison can fail: the members' images differ from each other.
    assert _diff(outcomes[0].image, outcomes[1].image) > 20  # type: ignore[union-attr]


def test_a_batch_needs_compatible_members(engine: TwoStageGenerator) -> None:
    with pytest.raises(ValueError, match="a batch needs"):
        engine.generate_batch([_params("a", 1), _params("b", 2, guidance_scale=3.0)], [None, None])


def test_a_cancelled_member_leaves_the_others_running(engine: TwoStageGenerator) -> None:
    def cancel(stage: str, step: int, total: int) -> None:
        if step == 3:
            raise GenerationCancelled

    batch = [_params("a red castle", 1), _params("a blue lake", 2)]
    kept, dropped = engine.generate_batch(batch, [None, cancel])
    assert isinstance(dropped, GenerationCancelled)
    assert not isinstance(kept, BaseException) and _diff(kept.image, engine.generate(batch[0]).image) <= TOLERANCE
    with pytest.raises(GenerationCancelled):  # alone, a cancel stops the run
        engine.generate(batch[0], cancel)


def test_queued_compatible_jobs_run_as_one_batch(tmp_path: Any, engine: TwoStageGenerator) -> None:
    settings = make_settings(tmp_path, image_batch_max=4)
    small = {"width": 64, "height": 64, "steps": 20}
    with running_server(settings) as url, Client(url, timeout=LIMIT_S) as client:
        wait_ready(url)
        # A job of another size holds the worker while the compatible ones queue up behind it.
        blocker = client.submit({"prompt": "a slow castle", "width": 256, "height": 256, "steps": 60})
        jobs = [
            client.submit({"prompt": p, "seed": s, **small}) for p, s in (("a fox", 1), ("a lake", 2), ("a bird", 3))
        ]
        odd = client.submit({"prompt": "an odd one", "seed": 4, **small, "guidance_scale": 3.0})
        deadline = time.monotonic() + LIMIT_S
        done = [client.wait(job.id, timeout=max(1.0, deadline - time.monotonic())) for job in [blocker, *jobs, odd]]
        assert all(job.status == "succeeded" for job in done), [job.error for job in done]
        for job in done[1:4]:
            (params,) = job_params(stored_recipe(job.recipe))
            alone = np.asarray(engine.generate(params).image, dtype=int)
            assert np.abs(pixels(client.image_bytes(job.results[0].image_id)) - alone).max() <= TOLERANCE
        metadata = [httpx.get(f"{url}/v1/images/{job.results[0].image_id}/metadata").json() for job in done]
    assert [m["metadata"]["batch_size"] for m in metadata] == [1, 3, 3, 3, 1]
