"""engine.schedule's step counts against the loop iterations diffusers' real pipelines run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cofounder_agent.contract import schedule
from cofounder_agent.contract.checks import StepCallback
from cofounder_agent.contract.params import SCHEDULER_NAMES, GenerationParams, LoadOptions, SchedulerName
from cofounder_agent.engine.models import LoadedModels, load_models
from cofounder_agent.engine.schedulers import build_scheduler
from cofounder_agent.engine.stages.base import run_base
from cofounder_agent.engine.stages.refine import run_refiner
from cofounder_agent.engine.views import pipeline_view

# 2 CPU cores: at most 30 steps (59 loop iterations with Heun) at 64x64 without guidance.
MAX_STEPS = 30


@pytest.fixture(scope="module")
def models() -> LoadedModels:
    return load_models(LoadOptions(model="tiny", refiner_model="tiny"))


def _view(cls: type[Any], source: Any, scheduler: SchedulerName) -> Any:
    return pipeline_view(cls, source, build_scheduler(scheduler, source.scheduler.config))


def _calls(run: Callable[[StepCallback], object]) -> int:
    """Step callbacks a pipeline call makes; an empty schedule diffusers refuses counts as none."""
    calls: list[int] = []
    refused: ValueError | None = None
    try:
        run(lambda stage, step, total: calls.append(step))
    except ValueError as exc:  # the engine's or diffusers' refusal of an empty schedule
        refused = exc
    assert refused is None or not calls, refused
    return len(calls)


@st.composite
def schedules(draw: st.DrawFn) -> tuple[int, float, float, SchedulerName]:
    """Steps, switch_at, strength and scheduler, crowded around the values where counts change."""
    scheduler: SchedulerName = draw(st.sampled_from(SCHEDULER_NAMES))
    steps = draw(st.integers(1, MAX_STEPS))
    # switch_at: anywhere, a step fraction (5 x 0.8), or exactly on a timestep of the schedule.
    timestep = draw(st.sampled_from([int(t) for t in schedule.timesteps(steps, scheduler)]))
    fraction = draw(st.integers(0, steps)) / steps
    special = draw(st.sampled_from([fraction, 1 - fraction, 1 - timestep / 1000]))
    # The API's range, 0 < switch_at < 1: diffusers ignores denoising_start/end outside it.
    switch_at = draw(st.one_of(st.floats(0.0001, 0.9999), st.just(min(max(special, 0.0001), 0.9999))))
    kept = draw(st.integers(0, steps))
    strength = draw(st.one_of(st.floats(0.001, 1.0), st.just(max(kept / steps, 0.001))))
    return steps, switch_at, strength, scheduler


@settings(max_examples=40, deadline=None)
@given(schedules())
@example((5, 0.8, 0.2, "euler"))  # issue #10: 5 x (1 - 0.8) = 0.9999999999999998, yet one refiner step runs
@example((7, 0.5, 0.3, "heun"))  # Heun: two callbacks a step, the refiner never starts mid-step
@example((20, 0.9999, 0.05, "euler"))  # the refiner gets no timestep
@example((20, 0.01, 1.0, "dpmpp_2m_karras"))  # the base gets no timestep
def test_predicted_counts_are_the_loop_iterations_diffusers_runs(
    models: LoadedModels, case: tuple[int, float, float, SchedulerName]
) -> None:
    steps, switch_at, strength, scheduler = case
    assert models.refiner is not None
    params = GenerationParams(
        prompt="a lighthouse", seed=3, width=64, height=64, steps=steps, guidance_scale=1.0, scheduler=scheduler
    )
    generator = [torch.Generator("cpu").manual_seed(3)]
    latents: list[torch.Tensor] = []

    def base(end: float | None) -> Callable[[StepCallback], object]:
        pipe = _view(StableDiffusionXLPipeline, models.base, scheduler)
        return lambda on_step: latents.append(run_base(pipe, [params], generator, denoising_end=end, on_step=on_step))

    def refiner(**schedule_args: Any) -> Callable[[StepCallback], object]:
        pipe = _view(StableDiffusionXLImg2ImgPipeline, models.refiner, scheduler)
        kwargs = {"num_inference_steps": steps, **schedule_args}
        return lambda on_step: run_refiner(pipe, [params], latents[0], generator, schedule=kwargs, on_step=on_step)

    predicted_split = schedule.ensemble_split(steps, switch_at, scheduler)
    ran_split = (_calls(base(switch_at)), _calls(refiner(denoising_start=switch_at)))
    assert ran_split == predicted_split
    assert _calls(base(None)) == schedule.full_steps(steps, scheduler)
    assert _calls(refiner(strength=strength)) == schedule.img2img_steps(steps, strength, scheduler)
    # So the accept/refuse decision is diffusers' too.
    refused = GenerationParams(prompt="x", seed=0, steps=steps, switch_at=switch_at, scheduler=scheduler)
    assert (refused.schedule_problem() is None) == (min(ran_split) >= 1)
    assert schedule.img2img_runs(steps, strength) == (schedule.img2img_steps(steps, strength, scheduler) >= 1)


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_timesteps_equal_the_schedulers_for_every_step_count(models: LoadedModels, scheduler: SchedulerName) -> None:
    for steps in range(1, 201):  # the API's whole range
        real = build_scheduler(scheduler, models.base.scheduler.config)
        real.set_timesteps(steps)
        assert np.array_equal(real.timesteps.numpy(), schedule.timesteps(steps, scheduler)), steps


def test_five_steps_switching_at_point_eight_leave_the_refiner_one_step() -> None:
    assert schedule.ensemble_split(5, 0.8, "euler") == (4, 1)
    assert GenerationParams(prompt="x", seed=0, steps=5, switch_at=0.8).schedule_problem() is None


def test_the_smallest_strength_runs_one_step_and_a_smaller_none() -> None:
    for steps in range(1, 201):
        lowest = schedule.min_strength(steps)
        assert schedule.img2img_steps(steps, lowest, "euler") == 1
        assert schedule.img2img_steps(steps, float(np.nextafter(lowest, 0.0)), "euler") == 0
