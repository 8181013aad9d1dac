"""Turn a job recipe into engine parameters: server defaults, seeds, and the checks before queueing."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from cofounder_agent.config import Settings
from cofounder_agent.engine.params import MAX_SEED, GenerationParams
from cofounder_agent.errors import AppError
from cofounder_agent.schemas.jobs import JobCreate, RefinerSpec
from cofounder_agent.schemas.stages import (
    DETAIL_LEVELS,
    AdaptiveStage,
    InpaintStage,
    ProgressiveStage,
    Stage,
    UpscaleStage,
    VariationsStage,
)

# Where each engine option lives in a job body; the seed endpoint passes its own names.
JOB_FIELDS: Mapping[str, str] = {
    "switch_at": "refiner.switch_at",
    "refiner_steps": "refiner.steps",
    "refiner_strength": "refiner.strength",
    "refiner_mode": "refiner.mode",
}


def invalid(field: str, message: str) -> AppError:
    return AppError(422, "invalid_request", f"{field}: {message}", field=field)


def resolve_recipe(recipe: JobCreate, settings: Settings, fields: Mapping[str, str] = JOB_FIELDS) -> JobCreate:
    """Fill server defaults and draw the seed, so the stored recipe alone reproduces the images.

    Options the chosen refiner mode would ignore, and schedules in which a stage would run no
    step, are refused with a 422 naming the field — before the job is queued.
    """
    for index, stage in enumerate(recipe.stages):
        if isinstance(stage, VariationsStage) and index != len(recipe.stages) - 1:
            raise invalid(f"stages.{index}.type", "variations must be the last stage (each is a final image)")
        if isinstance(stage, InpaintStage):
            continue  # its detail levels always run steps
        strengths = stage.strengths if isinstance(stage, ProgressiveStage) else [getattr(stage, "strength", None)]
        field = "strengths" if isinstance(stage, ProgressiveStage) else "strength"
        if any(s is not None and int(stage.steps * s) < 1 for s in strengths):
            raise invalid(f"stages.{index}.{field}", "steps x strength must be at least 1 (no denoising step runs)")
    if recipe.input_image_ids and not recipe.stages:
        raise invalid("stages", "refining input_image_ids needs at least one stage (e.g. refine)")
    if recipe.input_image_ids and recipe.num_images != 1:
        raise invalid("num_images", "each input picture gives one result: leave num_images at 1")
    spec = recipe.refiner or RefinerSpec(mode=settings.image_refiner_mode)
    mode = spec.mode
    if mode != "ensemble" and spec.switch_at is not None:
        raise invalid(fields["switch_at"], f"only applies to refiner mode ensemble, not {mode}")
    for option, value in (("refiner_steps", spec.steps), ("refiner_strength", spec.strength)):
        if mode != "img2img" and value is not None:
            raise invalid(fields[option], f"only applies to refiner mode img2img, not {mode}")
    if mode == "ensemble":
        spec = RefinerSpec(mode=mode, switch_at=spec.switch_at or settings.image_switch_at)
    elif mode == "img2img":
        steps = spec.steps if spec.steps is not None else settings.image_refiner_steps
        strength = spec.strength if spec.strength is not None else settings.image_refiner_strength
        spec = RefinerSpec(mode=mode, steps=steps, strength=strength)
    resolved = recipe.model_copy(
        update={
            "seed": recipe.seed if recipe.seed is not None else secrets.randbelow(MAX_SEED + 1),
            "scheduler": recipe.scheduler or settings.image_scheduler,
            "refiner": spec,
        }
    )
    problem = job_params(resolved)[0].schedule_problem()
    if problem is not None:
        raise invalid(fields[problem[0]], problem[1])
    return resolved


def job_params(recipe: JobCreate) -> list[GenerationParams]:
    """Engine parameters of each image of a resolved recipe (image i uses seed + i)."""
    assert recipe.seed is not None and recipe.scheduler is not None and recipe.refiner is not None
    spec = recipe.refiner
    return [
        GenerationParams(
            prompt=recipe.prompt,
            negative_prompt=recipe.negative_prompt,
            seed=(recipe.seed + index) % (MAX_SEED + 1),
            width=recipe.width,
            height=recipe.height,
            steps=recipe.steps,
            guidance_scale=recipe.guidance_scale,
            scheduler=recipe.scheduler,
            refiner_mode=spec.mode,
            # Options of other modes keep GenerationParams' defaults (the engine ignores them).
            switch_at=spec.switch_at if spec.switch_at is not None else GenerationParams.switch_at,
            refiner_steps=spec.steps if spec.steps is not None else GenerationParams.refiner_steps,
            refiner_strength=spec.strength if spec.strength is not None else GenerationParams.refiner_strength,
        )
        for index in range(len(recipe.input_image_ids) or recipe.num_images)
    ]


def denoising_steps(params: GenerationParams, stages: list[Stage] | None = None, generates: bool = True) -> int:
    """Steps one image runs, for progress and ETA (an estimate where a stage decides as it goes)."""
    total = params.steps if generates else 0
    if generates and params.refiner_mode == "img2img":
        total += int(params.refiner_steps * params.refiner_strength)
    for spec in stages or []:
        if isinstance(spec, ProgressiveStage):
            total += sum(int(spec.steps * s) for s in spec.strengths)
        elif isinstance(spec, AdaptiveStage):
            total += spec.max_passes * int(spec.steps * spec.max_strength) // 2  # it often stops early
        elif isinstance(spec, UpscaleStage):
            tiles = -(-params.width * spec.factor // spec.tile) * -(-params.height * spec.factor // spec.tile)
            total += tiles * int(spec.steps * spec.strength)
        elif isinstance(spec, VariationsStage):
            total += int(spec.steps * spec.strength)  # one batched loop
        elif isinstance(spec, InpaintStage):
            steps, strength, _ = DETAIL_LEVELS[spec.detail]
            total += int(steps * strength)
        else:
            total += int(spec.steps * spec.strength)
    return total


def stored_recipe(data: dict[str, Any]) -> JobCreate:
    """A recipe as stored, read leniently: options an older or newer version wrote are dropped."""
    return JobCreate.model_validate({key: value for key, value in data.items() if key in JobCreate.model_fields})
