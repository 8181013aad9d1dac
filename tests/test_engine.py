"""The two-stage generator: modes, fallback, schedulers, progress and cancellation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cofounder_agent.contract.checks import GenerationCancelled
from cofounder_agent.contract.params import SCHEDULER_NAMES, GenerationParams, LoadOptions
from cofounder_agent.engine.generate import TwoStageGenerator
from cofounder_agent.engine.models import load_models
from conftest import max_diff

SMALL = {"prompt": "a lighthouse", "seed": 7, "width": 64, "height": 64, "steps": 20}


@pytest.fixture(scope="module")
def generator() -> TwoStageGenerator:
    return TwoStageGenerator(load_models(LoadOptions(model="tiny", refiner_model="tiny")))


def _fail(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("CUDA out of memory (simulated)")


def test_same_seed_same_pixels_and_other_seed_differs(generator: TwoStageGenerator) -> None:
    first = generator.generate(GenerationParams(**SMALL)).image
    again = generator.generate(GenerationParams(**SMALL)).image
    other = generator.generate(GenerationParams(**{**SMALL, "seed": 8})).image
    assert max_diff(first, again) == 0
    assert max_diff(first, other) > 50


def test_ensemble_refiner_failure_finishes_with_the_base(
    generator: TwoStageGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_only = generator.generate(GenerationParams(**SMALL, refiner_mode="none")).image
    assert generator.models.refiner is not None
    monkeypatch.setattr(generator.models.refiner.unet, "forward", _fail)
    result = generator.generate(GenerationParams(**SMALL, refiner_mode="ensemble"))
    assert not result.refiner_applied
    assert result.refiner_fallback_reason == "RuntimeError: CUDA out of memory (simulated)"
    assert [(s.name, s.outcome) for s in result.stages] == [
        ("base", "ok"),
        ("refiner", "fallback"),
        ("base_finish", "ok"),
        ("decode", "ok"),
    ]
    # With Euler, base-to-switch-point plus base-from-switch-point is the full base schedule.
    assert max_diff(result.image, base_only) <= 1


def test_img2img_refiner_failure_decodes_the_finished_base(
    generator: TwoStageGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_only = generator.generate(GenerationParams(**SMALL, refiner_mode="none")).image
    assert generator.models.refiner is not None
    monkeypatch.setattr(generator.models.refiner.unet, "forward", _fail)
    result = generator.generate(GenerationParams(**SMALL, refiner_mode="img2img"))
    assert result.refiner_fallback_reason is not None
    assert max_diff(result.image, base_only) == 0
    # The fallback image is a real picture, not a raw latent or a blank.
    assert np.asarray(result.image).std() > 10


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_every_scheduler_generates(generator: TwoStageGenerator, scheduler: str) -> None:
    result = generator.generate(GenerationParams(**SMALL, scheduler=scheduler))  # type: ignore[arg-type]
    assert result.image.size == (64, 64)
    assert result.refiner_applied


def test_schedulers_are_built_per_request(generator: TwoStageGenerator) -> None:
    shared = generator.models.base.scheduler
    before = dict(shared.config)
    generator.generate(GenerationParams(**SMALL, scheduler="dpmpp_2m_karras"))
    assert generator.models.base.scheduler is shared
    assert dict(shared.config) == before
    euler = generator.generate(GenerationParams(**SMALL, scheduler="euler")).image
    ancestral = generator.generate(GenerationParams(**SMALL, scheduler="euler_a")).image
    assert max_diff(euler, ancestral) > 2


def test_progress_reports_every_step_of_each_stage(generator: TwoStageGenerator) -> None:
    seen: list[tuple[str, int, int]] = []
    generator.generate(GenerationParams(**SMALL, switch_at=0.75), on_step=lambda *event: seen.append(event))
    base = [e for e in seen if e[0] == "base"]
    refiner = [e for e in seen if e[0] == "refiner"]
    assert [e[1] for e in base] == list(range(1, 16))  # 75% of 20 steps
    assert [e[1] for e in refiner] == list(range(1, 6))
    assert {e[2] for e in base} == {15} and {e[2] for e in refiner} == {5}


def test_cancellation_stops_at_the_next_step(generator: TwoStageGenerator) -> None:
    steps: list[int] = []

    def cancel_at_three(stage: str, step: int, total: int) -> None:
        steps.append(step)
        if step == 3:
            raise GenerationCancelled

    with pytest.raises(GenerationCancelled):
        generator.generate(GenerationParams(**SMALL), on_step=cancel_at_three)
    assert steps == [1, 2, 3]


@pytest.mark.parametrize(("precision", "vae_dtype"), [("fp16", "float32"), ("bf16", "bfloat16")])
def test_half_precision_keeps_the_vae_safe(generator: TwoStageGenerator, precision: str, vae_dtype: str) -> None:
    """fp16 UNets with the VAE held in fp32 (SDXL's VAE overflows in fp16); bf16 needs no upcast."""
    models = load_models(LoadOptions(model="tiny", precision=precision))
    assert (models.precision, models.vae_dtype) == (precision, vae_dtype)
    assert str(models.base.unet.dtype) == str(models.refiner.unet.dtype) == f"torch.{DTYPE_NAMES[precision]}"
    half = np.asarray(TwoStageGenerator(models).generate(GenerationParams(**SMALL)).image, dtype=np.int16)
    full = np.asarray(generator.generate(GenerationParams(**SMALL)).image, dtype=np.int16)
    assert half.std() > 10  # a real picture, not black/NaN
    assert np.abs(half - full).mean() < 3  # the same image up to rounding


DTYPE_NAMES = {"fp16": "float16", "bf16": "bfloat16"}
