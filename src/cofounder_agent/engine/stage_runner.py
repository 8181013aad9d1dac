"""Run a recipe's stages after the base: each takes a picture and gives one, recording what it did.

The stages (``cofounder_agent/stages/``) say what to do; ``EngineOps`` does it over the loaded
modules, and ``StageRunner`` gives each run its generator, catches a failing stage's error and
records the outcome. Nothing here knows a stage by name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline
from PIL.Image import Image

from cofounder_agent.contract.checks import GenerationCancelled, StepCallback
from cofounder_agent.contract.params import MAX_SEED, GenerationParams
from cofounder_agent.contract.stage import (
    FaceRestorer,
    FoundFace,
    LoadedUpscaler,
    RefinePass,
    StageOutput,
    StageReport,
    StageSpec,
    UNet,
)
from cofounder_agent.engine.models import LoadedModels
from cofounder_agent.engine.schedulers import build_scheduler
from cofounder_agent.engine.stages.face import Face, detect_faces, restore_faces, spandrel_restorer
from cofounder_agent.engine.stages.img2img import refine_image, refine_variations
from cofounder_agent.engine.stages.inpaint import inpaint_region
from cofounder_agent.engine.stages.quality import quality
from cofounder_agent.engine.stages.upscale import process_tiles
from cofounder_agent.engine.stages.upscaler import load_model, model_path, upscale_with_model
from cofounder_agent.engine.views import pipeline_view

log = logging.getLogger(__name__)


class EngineOps:
    """The ``StageOps`` of one stage run: its generator, its step callback, its record."""

    def __init__(
        self,
        models: LoadedModels,
        models_dir: Path | None,
        params: GenerationParams,
        generator: torch.Generator,
        on_step: StepCallback | None,
        record: StageReport,
    ) -> None:
        self.models, self.models_dir, self.params = models, models_dir, params
        self.generator, self.on_step, self.record = generator, on_step, record
        # One pipeline object per UNet and kind for the whole run: each call sets its own
        # timesteps on the run's scheduler, as one pipeline did for every pass before.
        self._pipes: dict[tuple[UNet, type[Any]], Any] = {}

    def _pipe(self, model: UNet, cls: type[Any] = StableDiffusionXLImg2ImgPipeline) -> Any:
        if (model, cls) not in self._pipes:
            source = self.models.refiner if model == "refiner" and self.models.refiner is not None else self.models.base
            scheduler = build_scheduler(self.params.scheduler, source.scheduler.config)
            self._pipes[model, cls] = pipeline_view(cls, source, scheduler)
        return self._pipes[model, cls]

    def note(self, **facts: object) -> None:
        for name, value in facts.items():
            setattr(self.record, name, value)

    def refine(self, image: Image, ask: RefinePass, *, model: UNet, stage: str) -> Image:
        return refine_image(self._pipe(model), image, ask, self.generator, stage=stage, on_step=self.on_step)

    def refine_variations(self, image: Image, prompts: list[str], ask: RefinePass, *, model: UNet) -> list[Image]:
        return refine_variations(self._pipe(model), image, prompts, ask, self.generator, on_step=self.on_step)

    def inpaint(self, image: Image, mask: Image, ask: RefinePass, *, model: UNet, feather: int) -> Image:
        pipe = self._pipe(model, StableDiffusionXLInpaintPipeline)
        return inpaint_region(pipe, image, mask, ask, self.generator, feather=feather, on_step=self.on_step)

    def quality(self, image: Image) -> float:
        return quality(image)

    def process_tiles(self, image: Image, tile: int, overlap: int, work: Callable[[Image], Image]) -> Image:
        return process_tiles(image, tile, overlap, work)

    def _load(self, name: str, kind: str, what: str) -> Any:
        if self.models_dir is None:
            raise ValueError(f"no models dir is configured for {what}")
        return load_model(model_path(self.models_dir, name, kind), self.models.device.device)

    def load_upscaler(self, name: str) -> LoadedUpscaler:
        upscaler: LoadedUpscaler = self._load(name, "upscaler", "upscalers")
        return upscaler

    def upscale_with_model(self, upscaler: LoadedUpscaler, image: Image, factor: int, tile: int, overlap: int) -> Image:
        return upscale_with_model(upscaler, image, factor, tile, overlap)

    def face_restorer(self, name: str) -> FaceRestorer:
        return spandrel_restorer(self._load(name, "face_model", "face models"))

    def detect_faces(self, image: Image, max_faces: int) -> Sequence[FoundFace]:
        return detect_faces(image, max_faces)

    def restore_faces(self, image: Image, faces: Sequence[FoundFace], restorer: FaceRestorer, strength: float) -> Image:
        return restore_faces(image, cast("list[Face]", list(faces)), restorer, strength)


class StageRunner:
    """Runs stages on the engine thread, over the loaded modules (no extra weights)."""

    def __init__(self, models: LoadedModels, models_dir: Path | None = None) -> None:
        self.models = models
        self.models_dir = models_dir

    def run(
        self,
        spec: StageSpec,
        image: Image,
        params: GenerationParams,
        index: int,
        on_step: StepCallback | None = None,
        inputs: Mapping[str, Image | None] | None = None,
    ) -> StageOutput:
        """Run one stage; an optional stage that fails gives back its input picture, saying why."""
        start = time.perf_counter()
        # Each stage draws from its own generator: reproducible, and independent of the others.
        generator = torch.Generator("cpu").manual_seed((params.seed + 7919 * (index + 1)) % (MAX_SEED + 1))
        record = StageReport(index=index, spec=spec.model_dump(), outcome="ok", detail=None)
        if getattr(spec, "model", None) == "refiner" and self.models.refiner is None:
            record.model_used = "base (no refiner is loaded)"
        ops = EngineOps(self.models, self.models_dir, params, generator, on_step, record)
        try:
            output = spec.run(ops, image, params, inputs or {})
        except GenerationCancelled:
            raise
        except Exception as exc:  # the seed's behaviour, made explicit: keep the input, say why
            log.warning("stage %s (%s) failed, keeping its input: %s", index, spec.type, exc)
            record.outcome, record.detail = "fallback", f"{type(exc).__name__}: {exc}"
            output = StageOutput(image=image)
        record.seconds = round(time.perf_counter() - start, 4)
        record.size = list(output.image.size)
        output.record = record
        return output
