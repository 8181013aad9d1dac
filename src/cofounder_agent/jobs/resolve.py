"""Turn a job recipe into engine parameters: server defaults, seeds, and the checks before queueing."""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping
from typing import Any

from cofounder_agent.config import Settings
from cofounder_agent.contract.errors import InvalidField
from cofounder_agent.contract.fields import JOB_FIELDS
from cofounder_agent.contract.params import MAX_SEED, GenerationParams
from cofounder_agent.contract.schedule import ensemble_split, full_steps, img2img_steps, min_strength
from cofounder_agent.engine.stages.upscale import tiles  # numpy and PIL only: no torch
from cofounder_agent.schemas.jobs import JobCreate, RefinerSpec
from cofounder_agent.schemas.stages import (
    DETAIL_LEVELS,
    AdaptiveStage,
    FaceRestoreStage,
    InpaintStage,
    ProgressiveStage,
    Stage,
    UpscaleStage,
    VariationsStage,
)
from cofounder_agent.storage import MAX_PIXELS


def invalid(field: str, message: str) -> InvalidField:
    return InvalidField(field, message)


def resolve_recipe(recipe: JobCreate, settings: Settings, fields: Mapping[str, str] = JOB_FIELDS) -> JobCreate:
    """Fill server defaults and draw the seed, so the stored recipe alone reproduces the images.

    Options the chosen refiner mode would ignore, and schedules in which a stage would run no
    step, are refused with a 422 naming the field — before the job is queued.
    """
    for index, stage in enumerate(recipe.stages):
        if isinstance(stage, VariationsStage) and index != len(recipe.stages) - 1:
            raise invalid(f"stages.{index}.type", "variations must be the last stage (each is a final image)")
        if isinstance(stage, InpaintStage | FaceRestoreStage):
            continue  # detail levels always run steps; face models run none
        strengths = stage.strengths if isinstance(stage, ProgressiveStage) else [getattr(stage, "strength", None)]
        field = "strengths" if isinstance(stage, ProgressiveStage) else "strength"
        scheduler = recipe.scheduler or settings.image_scheduler
        if any(s is not None and img2img_steps(stage.steps, s, scheduler) < 1 for s in strengths):
            lowest = min_strength(stage.steps)
            message = f"{stage.steps} steps at this strength run no denoising step: use a strength of at least "
            raise invalid(f"stages.{index}.{field}", message + f"{lowest:.4g} or more steps")
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
    """Step callbacks one image runs, for progress and ETA (an estimate only for adaptive stages).

    The counts are diffusers' own (``engine.schedule``): a Heun step is two callbacks.
    """
    scheduler = params.scheduler

    def img2img(steps: int, strength: float) -> int:
        return img2img_steps(steps, strength, scheduler)

    total = 0
    if generates and params.refiner_mode == "ensemble":
        total += sum(ensemble_split(params.steps, params.switch_at, scheduler))
    elif generates:
        total += full_steps(params.steps, scheduler)
        if params.refiner_mode == "img2img":
            total += img2img(params.refiner_steps, params.refiner_strength)
    width, height = params.width, params.height
    for spec in stages or []:
        if isinstance(spec, ProgressiveStage):
            total += sum(img2img(spec.steps, s) for s in spec.strengths)
        elif isinstance(spec, AdaptiveStage):
            # It picks each pass's strength as it goes and often stops early: count half the passes.
            total += spec.max_passes * img2img(spec.steps, spec.max_strength) // 2
        elif isinstance(spec, UpscaleStage):
            width, height = width * spec.factor, height * spec.factor
            if spec.upscaler is None:  # the refine pass runs once per tile of the enlarged picture
                overlap = min(spec.overlap, spec.tile // 2)  # as the engine tiles (engine/recipe.py)
                total += len(list(tiles(width, height, spec.tile, overlap))) * img2img(spec.steps, spec.strength)
        elif isinstance(spec, VariationsStage):
            total += img2img(spec.steps, spec.strength)  # one batched loop
        elif isinstance(spec, InpaintStage):
            steps, strength, _ = DETAIL_LEVELS[spec.detail]
            total += img2img(steps, strength)
        elif isinstance(spec, FaceRestoreStage):
            pass  # a face model, no denoising steps
        else:
            total += img2img(spec.steps, spec.strength)
    return total


def resolve_face_models(recipe: JobCreate, settings: Settings, explicit: Collection[int]) -> None:
    """Give each face_restore stage its model file: its own, or ``IMAGE_FACE_MODEL``.

    A stage the caller wrote (its index in ``explicit``) without a usable model is refused with
    a 422; one that came with a named recipe keeps no model and is skipped at run time, saying
    why (the portrait recipe still runs on a server without a face model).
    """
    for index, stage in enumerate(recipe.stages):
        if not isinstance(stage, FaceRestoreStage):
            continue
        name = stage.face_model or settings.image_face_model
        if name is None:
            problem = "no face restoration model: name a GFPGAN or RestoreFormer .safetensors file in the "
            problem += "models dir, or have the server set IMAGE_FACE_MODEL"
        elif not (settings.models_dir / name).is_file():
            problem = f"{name!r}: no such file in the models dir"
        else:
            recipe.stages[index] = stage.model_copy(update={"face_model": name})
            continue
        if index in explicit:
            raise invalid(f"stages.{index}.face_model", problem)


def stored_recipe(data: dict[str, Any]) -> JobCreate:
    """A recipe as stored, read leniently: options an older or newer version wrote are dropped."""
    return JobCreate.model_validate({key: value for key, value in data.items() if key in JobCreate.model_fields})


def check_sizes(recipe: JobCreate, sizes: list[tuple[int, int]]) -> None:
    """Follow each picture's size through the stages: refuse what would be too large, or boxes outside it."""
    for size in sizes:
        width, height = size
        for index, stage in enumerate(recipe.stages):
            if (
                isinstance(stage, InpaintStage)
                and stage.box is not None
                and (stage.box[0] >= width or stage.box[1] >= height)
            ):
                raise invalid(f"stages.{index}.box", f"lies outside the {width}x{height} picture at this stage")
            if isinstance(stage, UpscaleStage):
                width, height = width * stage.factor, height * stage.factor
                if width * height > MAX_PIXELS:
                    raise invalid(
                        f"stages.{index}.factor", f"the result, {width}x{height}, is over {MAX_PIXELS} pixels"
                    )
