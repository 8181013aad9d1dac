"""Admission by cost: what a job asks of the GPU, in megapixel-steps, checked before it is queued.

A job's cost is the pixels each denoising step works on times the steps, summed over every
image and every stage pass. One step over 1024x1024 pixels costs 1. The web tier computes it
from the recipe alone (no torch): sizes come from the recipe and from stored image rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from cofounder_agent.contract import schedule
from cofounder_agent.contract.fields import JOB_FIELDS
from cofounder_agent.contract.params import SchedulerName
from cofounder_agent.contract.stage import MEGAPIXEL, CostPart
from cofounder_agent.jobs.resolve import invalid
from cofounder_agent.schemas.jobs import JobCreate

# The largest picture the base generates (schemas.media.Dimension: 2048 a side). A stage that
# denoises the whole picture at once needs attention memory that grows with the square of its
# pixels; beyond this only stages that work in tiles (upscale) or on crops (face_restore) may go.
MAX_DENOISE_PIXELS = 2048 * 2048
DEFAULT_STEPS: int = JobCreate.model_fields["steps"].default


def img2img_steps(steps: int, strength: float, scheduler: SchedulerName | None) -> int:
    """Denoising steps an img2img pass runs: ``steps`` re-noised by ``strength``, as diffusers counts."""
    return schedule.img2img_steps(steps, strength, scheduler or "euler")


def _mp(width: int, height: int) -> float:
    return width * height / MEGAPIXEL


def _base(recipe: JobCreate) -> Iterator[CostPart]:
    """The generation of one image: the base schedule, plus an img2img refiner's own."""
    pixels = _mp(recipe.width, recipe.height)
    # Name whichever of steps and size is further above the defaults (1024x1024, 40 steps).
    if recipe.steps / DEFAULT_STEPS >= pixels:
        field = "steps"
    else:
        field = "width" if recipe.width >= recipe.height else "height"
    # Ensemble splits one schedule of ``steps`` between base and refiner; none runs the base only.
    # Counted as diffusers runs it: a second-order scheduler (heun) evaluates the UNet twice a step.
    yield CostPart(field, pixels * schedule.full_steps(recipe.steps, recipe.scheduler or "euler"))
    spec = recipe.refiner
    if spec is not None and spec.mode == "img2img" and spec.steps is not None and spec.strength is not None:
        yield CostPart("refiner_steps", pixels * img2img_steps(spec.steps, spec.strength, recipe.scheduler))


def image_parts(recipe: JobCreate, size: tuple[int, int], generates: bool) -> list[CostPart]:
    """The parts of one image's cost in the order they run: generation, then each stage.

    ``size`` is the generated or stored picture's. A stage that denoises the whole picture
    on one larger than the base generates is refused (422 naming ``stages.N.type``).
    """
    parts = list(_base(recipe)) if generates else []
    scheduler = recipe.scheduler or "euler"
    width, height = size
    for index, stage in enumerate(recipe.stages):
        at = f"stages.{index}"
        if stage.denoises_whole_picture and width * height > MAX_DENOISE_PIXELS:
            picture = "generated" if generates else "stored"
            raise invalid(
                f"{at}.type",
                f"{stage.type} denoises the whole {width}x{height} picture (the {picture} picture at this stage) "
                f"at once, over the {MAX_DENOISE_PIXELS // MEGAPIXEL} megapixels the base generates: use an "
                "upscale stage (it works in tiles) or a smaller picture",
            )
        parts.extend(stage.cost(at, scheduler, (width, height)))
        width, height = stage.output_size((width, height))
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
