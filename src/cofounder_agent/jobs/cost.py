"""Admission by cost: what a job asks of the GPU, in megapixel-steps, checked before it is queued.

A job's cost is the pixels each denoising step works on times the steps, summed over every
image and every stage pass. One step over 1024x1024 pixels costs 1. The web tier computes it
from the recipe alone (no torch): sizes come from the recipe and from stored image rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from cofounder_agent.contract import schedule
from cofounder_agent.contract.fields import JOB_FIELDS
from cofounder_agent.contract.params import SchedulerName
from cofounder_agent.engine.stages.upscale import tiles  # numpy and PIL only: no torch
from cofounder_agent.jobs.resolve import invalid
from cofounder_agent.schemas.jobs import JobCreate
from cofounder_agent.schemas.stages import (
    DETAIL_LEVELS,
    AdaptiveStage,
    FaceRestoreStage,
    InpaintStage,
    ProgressiveStage,
    RefineStage,
    UpscaleStage,
    VariationsStage,
)

MEGAPIXEL = 1024 * 1024
# The largest picture the base generates (schemas.media.Dimension: 2048 a side). A stage that
# denoises the whole picture at once needs attention memory that grows with the square of its
# pixels; beyond this only the upscale stage, which works in tiles, may go.
MAX_DENOISE_PIXELS = 2048 * 2048
DEFAULT_STEPS: int = JobCreate.model_fields["steps"].default


def img2img_steps(steps: int, strength: float, scheduler: SchedulerName | None) -> int:
    """Denoising steps an img2img pass runs: ``steps`` re-noised by ``strength``, as diffusers counts."""
    return schedule.img2img_steps(steps, strength, scheduler or "euler")


@dataclass(frozen=True)
class Part:
    """One piece of an image's cost and the job field that sets it."""

    field: str  # a job-body name (JobCreate); mapped to the endpoint's own name when refused
    cost: float  # megapixel-steps


def _mp(width: int, height: int) -> float:
    return width * height / MEGAPIXEL


def _base(recipe: JobCreate) -> Iterator[Part]:
    """The generation of one image: the base schedule, plus an img2img refiner's own."""
    pixels = _mp(recipe.width, recipe.height)
    # Name whichever of steps and size is further above the defaults (1024x1024, 40 steps).
    if recipe.steps / DEFAULT_STEPS >= pixels:
        field = "steps"
    else:
        field = "width" if recipe.width >= recipe.height else "height"
    # Ensemble splits one schedule of ``steps`` between base and refiner; none runs the base only.
    # Counted as diffusers runs it: a second-order scheduler (heun) evaluates the UNet twice a step.
    yield Part(field, pixels * schedule.full_steps(recipe.steps, recipe.scheduler or "euler"))
    spec = recipe.refiner
    if spec is not None and spec.mode == "img2img" and spec.steps is not None and spec.strength is not None:
        yield Part("refiner_steps", pixels * img2img_steps(spec.steps, spec.strength, recipe.scheduler))


def image_parts(recipe: JobCreate, size: tuple[int, int], generates: bool) -> list[Part]:
    """The parts of one image's cost in the order they run: generation, then each stage.

    ``size`` is the generated or stored picture's. A stage that denoises the whole picture
    on one larger than the base generates is refused (422 naming ``stages.N.type``).
    """
    parts = list(_base(recipe)) if generates else []
    width, height = size
    for index, stage in enumerate(recipe.stages):
        at = f"stages.{index}"
        if isinstance(stage, FaceRestoreStage):
            continue  # a face model on face crops: no denoising step
        if isinstance(stage, UpscaleStage):
            width, height = width * stage.factor, height * stage.factor
            if stage.upscaler is None:  # one refine pass per tile of the enlarged picture
                overlap = min(stage.overlap, stage.tile // 2)  # as the engine's tiler
                boxes = tiles(width, height, stage.tile, overlap)
                pixels = sum(_mp(right - left, bottom - top) for left, top, right, bottom in boxes)
                steps = img2img_steps(stage.steps, stage.strength, recipe.scheduler)
                parts.append(Part(f"{at}.factor" if stage.factor == 4 else f"{at}.steps", pixels * steps))
            continue
        if width * height > MAX_DENOISE_PIXELS:
            picture = "generated" if generates else "stored"
            raise invalid(
                f"{at}.type",
                f"{stage.type} denoises the whole {width}x{height} picture (the {picture} picture at this stage) "
                f"at once, over the {MAX_DENOISE_PIXELS // MEGAPIXEL} megapixels the base generates: use an "
                "upscale stage (it works in tiles) or a smaller picture",
            )
        pixels = _mp(width, height)
        if isinstance(stage, ProgressiveStage):  # one pass per strength
            steps = sum(img2img_steps(stage.steps, s, recipe.scheduler) for s in stage.strengths)
            parts.append(Part(f"{at}.strengths", pixels * steps))
        elif isinstance(stage, AdaptiveStage):  # it may stop early; admission counts every pass
            steps = stage.max_passes * img2img_steps(stage.steps, stage.max_strength, recipe.scheduler)
            parts.append(Part(f"{at}.max_passes", pixels * steps))
        elif isinstance(stage, VariationsStage):  # one batched loop: a pass per prompt
            steps = len(stage.prompts) * img2img_steps(stage.steps, stage.strength, recipe.scheduler)
            parts.append(Part(f"{at}.prompts", pixels * steps))
        elif isinstance(stage, InpaintStage):
            level_steps, strength, _ = DETAIL_LEVELS[stage.detail]
            parts.append(Part(f"{at}.detail", pixels * img2img_steps(level_steps, strength, recipe.scheduler)))
        elif isinstance(stage, RefineStage):
            parts.append(Part(f"{at}.steps", pixels * img2img_steps(stage.steps, stage.strength, recipe.scheduler)))
    return parts


def _images(recipe: JobCreate, sizes: list[tuple[int, int]]) -> Iterator[tuple[str, tuple[int, int], bool]]:
    """Each image of the job: the field that adds it, its starting size, whether it is generated."""
    if recipe.input_image_ids:
        for index, size in enumerate(sizes):
            yield f"input_image_ids.{index}", size, False
    else:
        for _ in range(recipe.num_images):
            yield "num_images", sizes[0], True


def job_cost(recipe: JobCreate, sizes: list[tuple[int, int]]) -> float:
    """The job's cost in megapixel-steps (``sizes`` as for ``check_sizes``: the stored pictures', or one)."""
    return sum(part.cost for _, size, made in _images(recipe, sizes) for part in image_parts(recipe, size, made))


def check_cost(
    recipe: JobCreate, sizes: list[tuple[int, int]], budget: float, fields: Mapping[str, str] = JOB_FIELDS
) -> None:
    """Refuse a resolved recipe that costs more than ``budget``, naming the field that takes it over.

    The walk follows the work's order: the first image's generation and stages, then the
    other images. Within the first image the part that crosses the budget is named (e.g.
    ``steps``, ``stages.2.strengths``); past it, what adds images (``num_images``,
    ``input_image_ids.N``). ``fields`` gives the endpoint's own names for top-level fields.
    """
    total = job_cost(recipe, sizes)
    if total <= budget:
        return
    running = 0.0
    for number, (image_field, size, made) in enumerate(_images(recipe, sizes)):
        for part in image_parts(recipe, size, made):
            running += part.cost
            if running > budget:
                name = part.field if number == 0 else image_field
                field = fields.get(name, name)
                raise invalid(
                    field,
                    f"the job costs {total:.5g} megapixel-steps (pixels x denoising steps over every image and "
                    f"stage pass; 1024x1024 for one step costs 1), over this server's budget of {budget:.5g} "
                    f"(IMAGE_MAX_JOB_COST): lower {field}",
                )
    raise AssertionError("the parts add up to the total")  # pragma: no cover
