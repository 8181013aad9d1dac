"""``cofounder-agent generate``: the recipe flags run in-process, drawing what ``POST /v1/jobs`` draws."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cofounder_agent.cli_flags import FLAG_OF, add_recipe_flags, flag_stages, job_body
from cofounder_agent.cli_progress import ProgressBar, step_text
from cofounder_agent.config import Settings
from cofounder_agent.contract.params import MAX_SEED

if TYPE_CHECKING:
    from cofounder_agent.schemas.jobs import JobCreate


class _DeprecatedSteps(argparse.Action):
    """``--base-steps``: the old name of ``--steps``, kept for existing scripts."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, *_: Any) -> None:
        print("warning: --base-steps is deprecated; use --steps", file=sys.stderr)
        namespace.steps = values


def add_generate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gen = sub.add_parser("generate", help="generate images in-process (no server), as POST /v1/jobs would")
    gen.add_argument("prompt")
    gen.add_argument("-o", "--output-dir", type=Path, default=Path("."), help="where the PNGs go (default: .)")
    add_recipe_flags(gen)
    gen.add_argument("--base-steps", type=int, action=_DeprecatedSteps, help=argparse.SUPPRESS)


def check_generate_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse out-of-range flags by name before any model loads (the HTTP API's bounds)."""
    for name in ("width", "height"):
        value = getattr(args, name)
        if value is not None and (not 64 <= value <= 2048 or value % 8):
            parser.error(f"--{name} must be a multiple of 8 from 64 to 2048, not {value}")
    if args.steps is not None and not 1 <= args.steps <= 200:
        parser.error("--steps must be 1..200")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be 0..{MAX_SEED}")
    if args.num_images is not None and not 1 <= args.num_images <= 8:
        parser.error("--num-images must be 1..8")
    if args.switch_at is not None and not 0 < args.switch_at < 1:
        parser.error("--switch-at must be between 0 and 1")
    if args.refine_strength is not None and not 0 < args.refine_strength <= 1:
        parser.error("--refine-strength must be in (0, 1]")
    if args.refine_steps is not None and not 1 <= args.refine_steps <= 200:
        parser.error("--refine-steps must be 1..200")
    if args.face_strength is not None and not 0 < args.face_strength <= 1:
        parser.error("--face-strength must be in (0, 1]")


def cli_recipe(args: argparse.Namespace, settings: Settings) -> JobCreate:
    """The command line as a job, resolved by the job API's own rules (before any model loads)."""
    from pydantic import ValidationError

    from cofounder_agent.contract.errors import DomainError
    from cofounder_agent.contract.fields import CLI_FIELDS
    from cofounder_agent.jobs.recipe_book import RecipeBook
    from cofounder_agent.jobs.resolve import resolve_face_models, resolve_recipe
    from cofounder_agent.schemas.jobs import JobCreate

    book = RecipeBook(settings.image_data_dir / "recipes")
    try:
        template = book.get(args.recipe).stages if args.recipe is not None else None
    except DomainError as exc:
        raise SystemExit(f"error: --recipe: {exc.message}") from None
    stages = [stage.model_dump(exclude_none=True) for stage in template or []]
    try:
        # The server's own steps: the named recipe under the body, then its defaults and checks.
        recipe = resolve_recipe(book.apply(JobCreate.model_validate(job_body(args, stages))), settings, CLI_FIELDS)
        # The flags' stages must be usable (no face model: an error); a recipe's may be skipped.
        resolve_face_models(recipe, settings, range(len(stages), len(stages) + len(flag_stages(args))))
        return recipe
    except DomainError as exc:
        raise SystemExit(f"error: {exc.message}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(map(str, first["loc"]))
        raise SystemExit(f"error: {FLAG_OF.get(field, field)}: {first['msg']}") from None


async def generate(args: argparse.Namespace, settings: Settings) -> None:
    """Generate each image of the job, run its stages, save the PNGs; one JSON line per picture."""
    from cofounder_agent.contract.stage import StageReport
    from cofounder_agent.jobs.progress import Live
    from cofounder_agent.jobs.resolve import denoising_steps, job_params
    from cofounder_agent.services.image_service import ImageService
    from cofounder_agent.services.metadata import generation_metadata
    from cofounder_agent.storage import encode_png

    recipe = cli_recipe(args, settings)
    params_list = job_params(recipe)  # one per image: seed, seed + 1, ... as a job's
    service = ImageService(settings)
    service.start()
    try:
        if not await service.wait_ready():
            raise SystemExit(f"error: could not load the model: {service.status.error}")
        args.output_dir.mkdir(parents=True, exist_ok=True)
        live = Live(total_steps=sum(denoising_steps(p, recipe.stages) for p in params_list))
        loop = asyncio.get_running_loop()
        with ProgressBar() as bar:

            def shown(stage: str, step: int, total: int) -> None:
                live.steps_done += 1
                bar.show(step_text(stage, step, total), live.progress)

            def on_step(stage: str, step: int, total: int) -> None:  # on the engine thread: draw on ours
                loop.call_soon_threadsafe(shown, stage, step, total)

            for params in params_list:
                result = await service.generate(params, on_step)
                pictures, records = [result.image], []
                for index, spec in enumerate(recipe.stages):  # the seed's application: refine, upscale, ...
                    out = await service.run_stage(spec, pictures[0], params, index, on_step)
                    pictures = out.variations or [out.image]
                    record = out.record or StageReport(index=index, spec=spec.model_dump())
                    records.append(record.model_dump(mode="json"))
                    if record.outcome != "ok":
                        bar.write(f"warning: {spec.type} not applied: {record.detail}")
                metadata = {**generation_metadata(result, service.status), "recipe_stages": records}
                for number, picture in enumerate(pictures):
                    suffix = f"-{number + 1}" if len(pictures) > 1 else ""
                    path = args.output_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{params.seed}{suffix}.png"
                    path.write_bytes(encode_png(picture, metadata))
                    line = {
                        "path": str(path),
                        "seed": params.seed,
                        "size": list(picture.size),
                        "timings": result.timings,
                    }
                    bar.write(json.dumps(line), sys.stdout)  # above the bar, on a terminal
                if result.refiner_fallback_reason:
                    bar.write(f"warning: refiner not applied: {result.refiner_fallback_reason}")
            bar.show("done", 1.0)
    finally:
        await service.close()
