"""Two-stage SDXL generation: base -> refiner -> VAE decode, reproducible from a seed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

from cofounder_agent.contract.checks import GenerationCancelled, StepCallback, fan_out
from cofounder_agent.contract.params import GenerationParams, GenerationResult, StageRecord, batch_key
from cofounder_agent.engine.models import LoadedModels
from cofounder_agent.engine.schedulers import build_scheduler
from cofounder_agent.engine.stages.base import run_base
from cofounder_agent.engine.stages.decode import decode_batch
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
        (outcome,) = self.generate_batch([params], [on_step], keep_base)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def generate_batch(
        self, batch: list[GenerationParams], on_steps: list[StepCallback | None], keep_base: bool = False
    ) -> list[GenerationResult | BaseException]:
        """Generate compatible requests (equal ``batch_key``) as one batch: one call per stage.

        Each member has its own CPU generator, so its noise is the one it would draw alone and
        its image equals its unbatched image within the batched kernels' rounding. A member
        whose callback cancels gets ``GenerationCancelled``; the others go on.
        """
        keys = {batch_key(p, keep_base) for p in batch}
        if len(keys) != 1:
            raise ValueError("a batch needs equal sizes, schedules, guidance and refiner settings")
        models, params = self.models, batch[0]
        results = [GenerationResult(image=None, params=p, batch_size=len(batch)) for p in batch]  # type: ignore[arg-type]
        mode = params.refiner_mode if models.refiner is not None else "none"
        if params.refiner_mode != "none" and models.refiner is None:
            for result in results:
                result.refiner_fallback_reason = "no refiner model is loaded (IMAGE_REFINER_MODEL)"
        # One CPU generator per member for all its calls: the documented recipe, on every device.
        generators = [torch.Generator("cpu").manual_seed(p.seed) for p in batch]
        on_step, cancelled = fan_out(on_steps)
        record = _Recorder(results)

        # 1. Base: to the switch point (ensemble) or to the end.
        base = self._view(StableDiffusionXLPipeline, models.base, params)
        switch = params.switch_at if mode == "ensemble" else None
        latents = record.time(
            "base", lambda: run_base(base, batch, generators, denoising_end=switch, on_step=on_step), base
        )
        if keep_base and mode == "img2img":
            pictures = record.time("base_decode", lambda: decode_batch(base, latents))
            for result, picture in zip(results, pictures, strict=True):
                result.intermediates.append(("base", picture))

        # 2. Refiner, falling back to a correctly finished base latent if it fails.
        if mode != "none":
            latents = self._refine(batch, latents, generators, record, on_step)

        # 3. Decode.
        pictures = record.time("decode", lambda: decode_batch(base, latents))
        outcomes: list[GenerationResult | BaseException] = []
        for index, (result, picture) in enumerate(zip(results, pictures, strict=True)):
            result.image = picture
            outcomes.append(GenerationCancelled() if index in cancelled else result)
        return outcomes

    def _refine(
        self,
        batch: list[GenerationParams],
        latents: torch.Tensor,
        generators: list[torch.Generator],
        record: _Recorder,
        on_step: StepCallback,
    ) -> torch.Tensor:
        refiner = self._view(StableDiffusionXLImg2ImgPipeline, self.models.refiner, batch[0])
        start = time.perf_counter()
        try:
            refined = run_refiner(refiner, batch, latents, generators, on_step=on_step)
        except GenerationCancelled:
            raise
        except Exception as exc:  # the seed's behaviour: any refiner failure keeps the base image
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("refiner failed, falling back to the base image: %s", reason)
            record.add(StageRecord("refiner", time.perf_counter() - start, "fallback", reason))
            for result in record.results:
                result.refiner_fallback_reason = reason
            if batch[0].refiner_mode == "ensemble":
                return self._finish_with_base(batch, latents, generators, record, on_step)
            return latents
        record.add(StageRecord("refiner", time.perf_counter() - start, steps=refiner.num_timesteps))
        for result in record.results:
            result.refiner_applied = True
        return refined

    def _finish_with_base(
        self,
        batch: list[GenerationParams],
        latents: torch.Tensor,
        generators: list[torch.Generator],
        record: _Recorder,
        on_step: StepCallback,
    ) -> torch.Tensor:
        """Run the base's remaining steps: an ensemble latent is still noisy at the switch point."""
        finisher = self._view(StableDiffusionXLImg2ImgPipeline, self.models.base, batch[0])
        schedule = {"num_inference_steps": batch[0].steps, "denoising_start": batch[0].switch_at}
        finished: torch.Tensor = record.time(
            "base_finish",
            lambda: run_refiner(
                finisher, batch, latents, generators, stage="base_finish", schedule=schedule, on_step=on_step
            ),
            finisher,
        )
        return finished


class _Recorder:
    """Times a stage of a batch and records it on every member's result."""

    def __init__(self, results: list[GenerationResult]) -> None:
        self.results = results

    def add(self, stage: StageRecord) -> None:
        for result in self.results:
            result.stages.append(StageRecord(**vars(stage)))

    def time(self, name: str, fn: Callable[[], T], pipe: Any = None) -> T:
        value, seconds = _timed(fn)
        self.add(StageRecord(name, seconds, steps=pipe.num_timesteps if pipe is not None else None))
        return value
