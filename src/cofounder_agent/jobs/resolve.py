"""Turn a job recipe into engine parameters: server defaults, seeds, and the checks before queueing."""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from cofounder_agent.config import Settings
from cofounder_agent.contract.errors import InvalidField
from cofounder_agent.contract.fields import JOB_FIELDS
from cofounder_agent.contract.params import MAX_SEED, GenerationParams, SchedulerName
from cofounder_agent.contract.schedule import ensemble_split, full_steps, img2img_steps
from cofounder_agent.contract.stage import ServerDefaults, StageSpec
from cofounder_agent.schemas.jobs import JobCreate, RefinerSpec
from cofounder_agent.storage import MAX_PIXELS


def invalid(field: str, message: str) -> InvalidField:
    return InvalidField(field, message)


def resolve_recipe(recipe: JobCreate, settings: Settings, fields: Mapping[str, str] = JOB_FIELDS) -> JobCreate:
    """Fill server defaults and draw the seed, so the stored recipe alone reproduces the images.

    Options the chosen refiner mode would ignore, and schedules in which a stage would run no
    step, are refused with a 422 naming the field — before the job is queued.
    """
    check_stages(recipe.stages, recipe.scheduler or settings.image_scheduler)
    if recipe.input_image_ids and not recipe.stages:
        raise invalid("stages", "refining input_image_ids needs at least one stage (e.g. refine)")
    if recipe.input_image_ids and recipe.num_images != 1:
        raise invalid("num_images", "each input picture gives one result: leave num_images at 1")
    spec = _resolve_refiner(recipe.refiner, settings, fields)
    resolved = recipe.model_copy(
        update={
            "seed": recipe.seed if recipe.seed is not None else secrets.randbelow(MAX_SEED + 1),
            "scheduler": recipe.scheduler or settings.image_scheduler,
            "refiner": spec,
        }
    )
    problem = job_params(resolved)[0].schedule_problem(fields)
    if problem is not None:
        raise invalid(fields[problem[0]], problem[1])
    return resolved


def check_stages(stages: Sequence[StageSpec], scheduler: SchedulerName) -> None:
    """Ask each stage to refuse what it cannot run (a 422 naming ``stages.N.<field>``)."""
    for index, stage in enumerate(stages):
        stage.check(f"stages.{index}", scheduler, last=index == len(stages) - 1)


def _resolve_refiner(given: RefinerSpec | None, settings: Settings, fields: Mapping[str, str]) -> RefinerSpec:
    """The refiner's mode and its options, the server's where the recipe left them out.

    Options of another mode are refused, naming the field as the caller wrote it (``fields``).
    """
    spec = given or RefinerSpec(mode=settings.image_refiner_mode)
    mode = spec.mode
    if mode != "ensemble" and spec.switch_at is not None:
        raise invalid(fields["switch_at"], f"only applies to refiner mode ensemble, not {mode}")
    for option, value in (("refiner_steps", spec.steps), ("refiner_strength", spec.strength)):
        if mode != "img2img" and value is not None:
            raise invalid(fields[option], f"only applies to refiner mode img2img, not {mode}")
    if mode == "ensemble":
        return RefinerSpec(mode=mode, switch_at=spec.switch_at or settings.image_switch_at)
    if mode == "img2img":
        steps = spec.steps if spec.steps is not None else settings.image_refiner_steps
        strength = spec.strength if spec.strength is not None else settings.image_refiner_strength
        return RefinerSpec(mode=mode, steps=steps, strength=strength)
    return spec


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


def denoising_steps(params: GenerationParams, stages: Sequence[StageSpec] | None = None, generates: bool = True) -> int:
    """Step callbacks one image runs, for progress and ETA (an estimate only for adaptive stages).

    The counts are diffusers' own (``contract.schedule``): a Heun step is two callbacks.
    """
    scheduler = params.scheduler
    total = 0
    if generates and params.refiner_mode == "ensemble":
        total += sum(ensemble_split(params.steps, params.switch_at, scheduler))
    elif generates:
        total += full_steps(params.steps, scheduler)
        if params.refiner_mode == "img2img":
            total += img2img_steps(params.refiner_steps, params.refiner_strength, scheduler)
    size = (params.width, params.height)
    for spec in stages or []:
        total += spec.denoising_steps(scheduler, size)
        size = spec.output_size(size)
    return total


def resolve_face_models(recipe: JobCreate, settings: Settings, explicit: Collection[int]) -> None:
    """Give each stage the server's defaults (face_restore: its model, or ``IMAGE_FACE_MODEL``).

    A stage the caller wrote (its index in ``explicit``) that the defaults leave unusable is
    refused with a 422; one that came with a named recipe is left for its run to skip, saying
    why (the portrait recipe still runs on a server without a face model).
    """
    server = ServerDefaults(models_dir=settings.models_dir, face_model=settings.image_face_model)
    for index, stage in enumerate(recipe.stages):
        recipe.stages[index] = stage.with_server_defaults(f"stages.{index}", server, explicit=index in explicit)


def stored_recipe(data: dict[str, Any]) -> JobCreate:
    """A recipe as stored, read leniently: options an older or newer version wrote are dropped."""
    return JobCreate.model_validate({key: value for key, value in data.items() if key in JobCreate.model_fields})


def check_sizes(recipe: JobCreate, sizes: list[tuple[int, int]]) -> None:
    """Follow each picture's size through the stages: refuse what would be too large, or boxes outside it."""
    for start in sizes:
        size = start
        for index, stage in enumerate(recipe.stages):
            stage.check_size(f"stages.{index}", size, MAX_PIXELS)
            size = stage.output_size(size)
