"""Two-stage SDXL generation: base -> refiner -> VAE decode, reproducible from a seed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

from cofounder_agent.engine.models import LoadedModels
from cofounder_agent.engine.params import GenerationParams, GenerationResult, StageRecord
from cofounder_agent.engine.schedulers import build_scheduler
from cofounder_agent.engine.stages.base import run_base
from cofounder_agent.engine.stages.common import GenerationCancelled, StepCallback
from cofounder_agent.engine.stages.decode import decode_latents
from cofounder_agent.engine.stages.refine import run_refiner
from cofounder_agent.engine.views import pipeline_view

log = logging.getLogger(__name__)
T = TypeVar("T")


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


class TwoStageGenerator:
    """Run requests against loaded models; call from one thread per device only."""

    def __init__(self, models: LoadedModels) -> None:
        self.models = models

    @staticmethod
    def _view(cls: type[Any], source: Any, params: GenerationParams) -> Any:
        # A fresh scheduler per call: nothing about a request is set on the shared pipelines.
        return pipeline_view(cls, source, build_scheduler(params.scheduler, source.scheduler.config))

    def generate(
        self, params: GenerationParams, on_step: StepCallback | None = None, keep_base: bool = False
    ) -> GenerationResult:
        """Generate one image; a refiner failure falls back to the properly finished base image.

        ``keep_base`` also decodes the finished base latent in img2img mode (an intermediate
        picture); in ensemble mode the base stops half-denoised, so there is none to keep.
        """
        models = self.models
        result = GenerationResult(image=None, params=params)  # type: ignore[arg-type]
        mode = params.refiner_mode if models.refiner is not None else "none"
        if params.refiner_mode != "none" and models.refiner is None:
            result.refiner_fallback_reason = "no refiner model is loaded (IMAGE_REFINER_MODEL)"
        # One CPU generator for both calls: the documented recipe, identical on every device.
        generator = torch.Generator("cpu").manual_seed(params.seed)

        # 1. Base: to the switch point (ensemble) or to the end.
        base = self._view(StableDiffusionXLPipeline, models.base, params)
        switch = params.switch_at if mode == "ensemble" else None
        latents, seconds = _timed(lambda: run_base(base, params, generator, denoising_end=switch, on_step=on_step))
        result.stages.append(StageRecord("base", seconds, steps=base.num_timesteps))
        if keep_base and mode == "img2img":
            picture, seconds = _timed(lambda: decode_latents(base, latents))
            result.intermediates.append(("base", picture))
            result.stages.append(StageRecord("base_decode", seconds))

        # 2. Refiner, falling back to a correctly finished base latent if it fails.
        if mode != "none":
            latents = self._refine(params, latents, generator, result, on_step)

        # 3. Decode.
        result.image, seconds = _timed(lambda: decode_latents(base, latents))
        result.stages.append(StageRecord("decode", seconds))
        return result

    def _refine(
        self,
        params: GenerationParams,
        latents: torch.Tensor,
        generator: torch.Generator,
        result: GenerationResult,
        on_step: StepCallback | None,
    ) -> torch.Tensor:
        refiner = self._view(StableDiffusionXLImg2ImgPipeline, self.models.refiner, params)
        start = time.perf_counter()
        try:
            refined = run_refiner(refiner, params, latents, generator, on_step=on_step)
        except GenerationCancelled:
            raise
        except Exception as exc:  # the seed's behaviour: any refiner failure keeps the base image
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("refiner failed, falling back to the base image: %s", reason)
            result.stages.append(StageRecord("refiner", time.perf_counter() - start, "fallback", reason))
            result.refiner_fallback_reason = reason
            if params.refiner_mode == "ensemble":
                return self._finish_with_base(params, latents, generator, result, on_step)
            return latents
        result.stages.append(StageRecord("refiner", time.perf_counter() - start, steps=refiner.num_timesteps))
        result.refiner_applied = True
        return refined

    def _finish_with_base(
        self,
        params: GenerationParams,
        latents: torch.Tensor,
        generator: torch.Generator,
        result: GenerationResult,
        on_step: StepCallback | None,
    ) -> torch.Tensor:
        """Run the base's remaining steps: an ensemble latent is still noisy at the switch point."""
        finisher = self._view(StableDiffusionXLImg2ImgPipeline, self.models.base, params)
        schedule = {"num_inference_steps": params.steps, "denoising_start": params.switch_at}
        finished, seconds = _timed(
            lambda: run_refiner(
                finisher, params, latents, generator, stage="base_finish", schedule=schedule, on_step=on_step
            )
        )
        result.stages.append(StageRecord("base_finish", seconds, steps=finisher.num_timesteps))
        return finished
