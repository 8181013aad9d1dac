"""The recipe flags `generate` and `submit` share, and the job body they make.

Defined once so the two commands accept the same options with the same meaning: the
command line becomes a job body (``JobCreate``'s fields, only those given), which the
server validates for `submit` and the job API's own rules resolve in-process for `generate`.
The defaults are the job API's, read from ``JobCreate``, so both draw what ``POST /v1/jobs``
draws.
"""

from __future__ import annotations

import argparse
from typing import Any

from cofounder_agent.config import Settings
from cofounder_agent.contract.params import MAX_SEED, REFINER_MODES, SCHEDULER_NAMES
from cofounder_agent.schemas.jobs import JobCreate
from cofounder_agent.stages.face_restore import FaceRestoreStage
from cofounder_agent.stages.upscale import UpscaleStage

RECIPE_FLAGS = (
    "--negative",
    "--seed",
    "--width",
    "--height",
    "--steps",
    "--guidance",
    "--scheduler",
    "--num-images",
    "--refiner-mode",
    "--switch-at",
    "--refine-steps",
    "--refine-strength",
    "--upscale",
    "--upscale-factor",
    "--enhance-face",
    "--face-strength",
    "--recipe",
)

# The job body's field each flag sets, for errors that name the field (stages are by index).
FLAG_OF = {
    "negative_prompt": "--negative",
    "seed": "--seed",
    "width": "--width",
    "height": "--height",
    "steps": "--steps",
    "guidance_scale": "--guidance",
    "scheduler": "--scheduler",
    "num_images": "--num-images",
    "recipe": "--recipe",
    "refiner.mode": "--refiner-mode",
    "refiner.switch_at": "--switch-at",
    "refiner.steps": "--refine-steps",
    "refiner.strength": "--refine-strength",
}


def _default(name: str) -> Any:
    return JobCreate.model_fields[name].default


def _setting(name: str) -> str:
    """Where a server-wide default comes from: its variable and shipped value (generate reads this environment's)."""
    return f"default ${name.upper()}, {Settings.model_fields[name].default}"


def add_recipe_flags(parser: argparse.ArgumentParser) -> None:
    """Add the recipe flags; an unset one comes from --recipe, else the job API's default (in its help)."""
    flags = parser.add_argument_group("recipe options (as POST /v1/jobs; unset ones from --recipe, else the default)")
    add = flags.add_argument
    add("--negative", default=None, help="negative prompt")
    add("--seed", type=int, default=None, help=f"first image's seed, 0..{MAX_SEED}; random if omitted")
    add("--width", type=int, default=None, help=f"multiple of 8, 64..2048 (default {_default('width')})")
    add("--height", type=int, default=None, help=f"multiple of 8, 64..2048 (default {_default('height')})")
    add("--steps", type=int, default=None, help=f"base schedule length, 1..200 (default {_default('steps')})")
    add("--guidance", type=float, default=None, help=f"1..30 (default {_default('guidance_scale')})")
    add("--scheduler", choices=SCHEDULER_NAMES, default=None, help=_setting("image_scheduler"))
    add("--num-images", type=int, default=None, help=f"1..8; image i uses seed + i (default {_default('num_images')})")
    add("--refiner-mode", choices=REFINER_MODES, default=None, help=_setting("image_refiner_mode"))
    add("--switch-at", type=float, default=None, help=f"ensemble: base share, 0..1 ({_setting('image_switch_at')})")
    add("--refine-steps", type=int, default=None, help=f"img2img: schedule length ({_setting('image_refiner_steps')})")
    add("--refine-strength", type=float, default=None, help=f"img2img: 0..1 ({_setting('image_refiner_strength')})")
    add("--upscale", action="store_true", help="add an upscale stage (Lanczos + tiled refine)")
    factor = UpscaleStage.model_fields["factor"].default
    add("--upscale-factor", type=int, choices=(2, 4), default=None, help=f"with --upscale (default {factor})")
    add("--enhance-face", action="store_true", help="add a face_restore stage (needs a face model)")
    strength = FaceRestoreStage.model_fields["strength"].default
    add("--face-strength", type=float, default=None, help=f"with --enhance-face: 0..1 (default {strength})")
    add("--recipe", default=None, help="start from a named recipe (e.g. full_pipeline; GET /v1/recipes lists them)")


def check_recipe_flags(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse flags that make no sense on their own, naming them (the values are the job API's to check)."""
    if args.face_strength is not None and not args.enhance_face:
        parser.error("--face-strength only applies with --enhance-face")
    if args.upscale_factor is not None and not args.upscale:
        parser.error("--upscale-factor only applies with --upscale")


def flag_stages(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The stages the flags ask for: faces first, at the size face models work at; then enlarge."""
    stages: list[dict[str, Any]] = []
    if args.enhance_face:
        stages.append({"type": "face_restore"} | _given(strength=args.face_strength))
    if args.upscale:
        stages.append({"type": "upscale"} | _given(factor=args.upscale_factor))
    return stages


def job_body(args: argparse.Namespace, recipe_stages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The flags as a job body: only what was given, the rest is the job API's (or --recipe's).

    The flags' stages follow the named recipe's (``recipe_stages``): a body's own stages replace
    a recipe's, so the recipe's are written out to keep them.
    """
    body = {"prompt": args.prompt} | _given(
        negative_prompt=args.negative,
        seed=args.seed,
        width=args.width,
        height=args.height,
        steps=args.steps,
        guidance_scale=args.guidance,
        scheduler=args.scheduler,
        num_images=args.num_images,
        recipe=args.recipe,
    )
    refiner = _given(mode=args.refiner_mode, switch_at=args.switch_at, steps=args.refine_steps)
    refiner |= _given(strength=args.refine_strength)
    if refiner:
        body["refiner"] = refiner
    if stages := flag_stages(args):
        body["stages"] = [*(recipe_stages or []), *stages]
    return body


def _given(**options: Any) -> dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}
