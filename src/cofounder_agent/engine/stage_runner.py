"""Run a recipe's stages after the base: each takes a picture and gives one, recording what it did."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline
from PIL.Image import Image

from cofounder_agent.contract.params import MAX_SEED, GenerationParams
from cofounder_agent.contract.schedule import min_strength
from cofounder_agent.engine.models import LoadedModels
from cofounder_agent.engine.schedulers import build_scheduler
from cofounder_agent.engine.stages.common import GenerationCancelled, StepCallback
from cofounder_agent.engine.stages.face import detect_faces, restore_faces, spandrel_restorer
from cofounder_agent.engine.stages.img2img import RefinePass, refine_image, refine_variations
from cofounder_agent.engine.stages.inpaint import box_mask, inpaint_region
from cofounder_agent.engine.stages.quality import quality
from cofounder_agent.engine.stages.upscale import lanczos, process_tiles
from cofounder_agent.engine.stages.upscaler import load_model, model_path, upscale_with_model
from cofounder_agent.engine.views import pipeline_view
from cofounder_agent.schemas.stages import (
    DETAIL_LEVELS,
    AdaptiveStage,
    DenoisingStage,
    FaceRestoreStage,
    InpaintStage,
    ProgressiveStage,
    RefineStage,
    Stage,
    UpscaleStage,
    VariationsStage,
)

log = logging.getLogger(__name__)


@dataclass
class StageOutput:
    """A stage's picture, its passes (multi-pass stages) and its record for the metadata."""

    image: Image
    passes: list[Image] = field(default_factory=list)
    variations: list[Image] = field(default_factory=list)  # final pictures of a variations stage
    record: dict[str, Any] = field(default_factory=dict)


class StageRunner:
    """Runs stages on the engine thread, over the loaded modules (no extra weights)."""

    def __init__(self, models: LoadedModels, models_dir: Path | None = None) -> None:
        self.models = models
        self.models_dir = models_dir

    def run(
        self,
        spec: Stage,
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
        record: dict[str, Any] = {"index": index, "spec": spec.model_dump(), "outcome": "ok", "detail": None}
        if getattr(spec, "model", None) == "refiner" and self.models.refiner is None:
            record["model_used"] = "base (no refiner is loaded)"
        try:
            output = self._dispatch(spec, image, params, generator, on_step, record, inputs or {})
        except GenerationCancelled:
            raise
        except Exception as exc:  # the seed's behaviour, made explicit: keep the input, say why
            log.warning("stage %s (%s) failed, keeping its input: %s", index, spec.type, exc)
            record.update(outcome="fallback", detail=f"{type(exc).__name__}: {exc}")
            output = StageOutput(image=image)
        record["seconds"] = round(time.perf_counter() - start, 4)
        record["size"] = list(output.image.size)
        output.record = record
        return output

    def _pipe(self, spec: DenoisingStage, params: GenerationParams, cls: Any = StableDiffusionXLImg2ImgPipeline) -> Any:
        source = (
            self.models.refiner if spec.model == "refiner" and self.models.refiner is not None else self.models.base
        )
        scheduler = build_scheduler(params.scheduler, source.scheduler.config)
        return pipeline_view(cls, source, scheduler)

    def _dispatch(
        self,
        spec: Stage,
        image: Image,
        params: GenerationParams,
        generator: torch.Generator,
        on_step: StepCallback | None,
        record: dict[str, Any],
        inputs: Mapping[str, Image | None],
    ) -> StageOutput:
        if isinstance(spec, InpaintStage):
            mask = inputs.get("mask_image_id")
            return StageOutput(self._inpaint(spec, image, params, generator, on_step, mask))
        if isinstance(spec, FaceRestoreStage):
            return self._faces(spec, image, record)
        pipe = self._pipe(spec, params)

        def refine(picture: Image, strength: float, steps: int, stage: str) -> Image:
            ask = RefinePass(
                prompt=spec.prompt or params.prompt,
                negative_prompt=params.negative_prompt,
                strength=strength,
                steps=steps,
                guidance_scale=spec.guidance_scale or params.guidance_scale,
            )
            return refine_image(pipe, picture, ask, generator, stage=stage, on_step=on_step)

        if isinstance(spec, RefineStage):
            return StageOutput(refine(image, spec.strength, spec.steps, "refine"))
        if isinstance(spec, ProgressiveStage):
            passes: list[Image] = []
            for number, strength in enumerate(spec.strengths, start=1):
                image = refine(image, strength, spec.steps, f"progressive.{number}")
                passes.append(image)
            return StageOutput(image, passes)
        if isinstance(spec, AdaptiveStage):
            return self._adaptive(spec, image, refine, record)
        if isinstance(spec, UpscaleStage) and spec.upscaler is not None:
            if self.models_dir is None:
                raise ValueError("no models dir is configured for upscalers")
            upscaler = load_model(model_path(self.models_dir, spec.upscaler), self.models.device.device)
            record["upscaler_scale"] = upscaler.scale
            return StageOutput(upscale_with_model(upscaler, image, spec.factor, spec.tile, spec.overlap))
        if isinstance(spec, UpscaleStage):
            return StageOutput(self._upscale(spec, image, refine))
        if isinstance(spec, VariationsStage):
            ask = RefinePass(
                prompt=params.prompt,
                negative_prompt=params.negative_prompt,
                strength=spec.strength,
                steps=spec.steps,
                guidance_scale=spec.guidance_scale or params.guidance_scale,
            )
            pictures = refine_variations(pipe, image, list(spec.prompts), ask, generator, on_step=on_step)
            return StageOutput(pictures[0], variations=pictures)
        raise ValueError(f"unknown stage type {spec.type!r}")  # pragma: no cover - the schema forbids it

    def _inpaint(
        self,
        spec: InpaintStage,
        image: Image,
        params: GenerationParams,
        generator: torch.Generator,
        on_step: StepCallback | None,
        mask: Image | None,
    ) -> Image:
        steps, strength, guidance = DETAIL_LEVELS[spec.detail]
        if mask is None:
            if spec.box is None:
                raise ValueError(f"the mask picture {spec.mask_image_id} is no longer stored")
            mask = box_mask(image.size, spec.box)
        ask = RefinePass(
            prompt=spec.prompt or params.prompt,
            negative_prompt=params.negative_prompt,
            strength=strength,
            steps=steps,
            guidance_scale=spec.guidance_scale or guidance,
        )
        pipe = self._pipe(spec, params, StableDiffusionXLInpaintPipeline)
        return inpaint_region(pipe, image, mask, ask, generator, feather=spec.feather, on_step=on_step)

    def _faces(self, spec: FaceRestoreStage, image: Image, record: dict[str, Any]) -> StageOutput:
        if spec.face_model is None:  # only a named recipe's stage gets here without one
            record.update(outcome="skipped", detail="no face model: the server has no IMAGE_FACE_MODEL")
            return StageOutput(image)
        if self.models_dir is None:
            raise ValueError("no models dir is configured for face models")
        model = load_model(model_path(self.models_dir, spec.face_model, "face_model"), self.models.device.device)
        restorer = spandrel_restorer(model)
        faces = detect_faces(image, spec.max_faces)
        record.update(faces=len(faces), eyes_found=sum(face.eyes_found for face in faces))
        if not faces:
            record.update(outcome="skipped", detail="no faces found")
            return StageOutput(image)
        return StageOutput(restore_faces(image, faces, restorer, spec.strength))

    @staticmethod
    def _adaptive(spec: AdaptiveStage, image: Image, refine: Any, record: dict[str, Any]) -> StageOutput:
        """The seed's adaptive loop, with a real score instead of a random number."""
        scores: list[float] = [quality(image)]
        passes: list[Image] = []
        while scores[-1] < spec.threshold and len(passes) < spec.max_passes:
            # Strength from the gap to the threshold (the seed's rule), but at least one step.
            strength = min(spec.max_strength, (spec.threshold - scores[-1]) * 0.8)
            strength = min(1.0, max(strength, min_strength(spec.steps)))
            image = refine(image, strength, spec.steps, f"adaptive.{len(passes) + 1}")
            passes.append(image)
            scores.append(quality(image))
        record.update(scores=scores, passes=len(passes), threshold_met=scores[-1] >= spec.threshold)
        return StageOutput(image, passes)

    @staticmethod
    def _upscale(spec: UpscaleStage, image: Image, refine: Any) -> Image:
        big = lanczos(image.convert("RGB"), spec.factor)

        def detail(tile: Image) -> Image:
            out: Image = refine(tile, spec.strength, spec.steps, "upscale")
            # The VAE works in multiples of 8: fit an odd-sized edge tile back to its place.
            return out if out.size == tile.size else out.resize(tile.size)

        return process_tiles(big, spec.tile, min(spec.overlap, spec.tile // 2), detail)
