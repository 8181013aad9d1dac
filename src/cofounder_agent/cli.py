"""``cofounder-agent``: serve the API, run workers, generate in-process, export the tiny model, drive jobs."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cofounder_agent.cli_jobs import JOB_COMMANDS, add_job_parsers, run_job_command
from cofounder_agent.cli_roles import REFUSED, add_role_parsers, refused, run_worker, run_workers_command
from cofounder_agent.config import Settings
from cofounder_agent.contract.params import MAX_SEED, REFINER_MODES, SCHEDULER_NAMES
from cofounder_agent.logging_setup import configure_logging

if TYPE_CHECKING:
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cofounder-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (the container uses 0.0.0.0)")
    serve.add_argument("--port", type=int, default=8000)
    add_role_parsers(sub, serve)

    gen = sub.add_parser("generate", help="generate an image in-process (no server)")
    gen.add_argument("prompt")
    gen.add_argument("-o", "--output-dir", type=Path, default=Path("."))
    gen.add_argument("--negative", default=None, help="negative prompt")
    gen.add_argument("--seed", type=int, default=None, help=f"0..{MAX_SEED}; random when omitted")
    # Unset options come from --recipe, else the seed application's defaults (1024², 50, 8.0).
    gen.add_argument("--width", type=int, default=None, help="default 1024")
    gen.add_argument("--height", type=int, default=None, help="default 1024")
    gen.add_argument("--base-steps", type=int, default=None, help="default 50")
    gen.add_argument("--guidance", type=float, default=None, help="default 8.0")
    gen.add_argument("--scheduler", choices=SCHEDULER_NAMES, default=None)
    gen.add_argument("--refiner-mode", choices=REFINER_MODES, default=None)
    gen.add_argument("--switch-at", type=float, default=None, help="ensemble: base share of the schedule")
    gen.add_argument("--refine-steps", type=int, default=None, help="img2img: refiner schedule length")
    gen.add_argument("--refine-strength", type=float, default=None, help="img2img: re-noising strength")
    gen.add_argument("--upscale", action="store_true", help="enlarge the result (Lanczos + tiled refine)")
    gen.add_argument("--upscale-factor", type=int, choices=(2, 4), default=2)
    gen.add_argument("--recipe", default=None, help="start from a named recipe (e.g. full_pipeline)")
    gen.add_argument("--enhance-face", action="store_true", help="restore faces (needs IMAGE_FACE_MODEL)")
    gen.add_argument("--face-strength", type=float, default=None, help="with --enhance-face: 0..1 (0.5)")

    db = sub.add_parser("db", help="the job store's schema (IMAGE_DATABASE_URL, default SQLite in the data dir)")
    db.add_argument(
        "action",
        choices=("upgrade", "current"),
        help="upgrade: migrate to the newest revision (the server also does at start); current: print the revision",
    )

    export = sub.add_parser("export-tiny", help="write the built-in tiny model as diffusers folders")
    export.add_argument("directory", type=Path)
    add_job_parsers(sub)
    from cofounder_agent.bench import add_parser as add_bench_parser

    add_bench_parser(sub)
    return parser


def _check_generate_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    # The same bounds as the HTTP API, so the CLI fails early with the option's name.
    for name in ("width", "height"):
        value = getattr(args, name)
        if value is not None and (not 64 <= value <= 2048 or value % 8):
            parser.error(f"--{name} must be a multiple of 8 from 64 to 2048, not {value}")
    if args.base_steps is not None and not 1 <= args.base_steps <= 200:
        parser.error("--base-steps must be 1..200")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be 0..{MAX_SEED}")
    if args.switch_at is not None and not 0 < args.switch_at < 1:
        parser.error("--switch-at must be between 0 and 1")
    if args.refine_strength is not None and not 0 < args.refine_strength <= 1:
        parser.error("--refine-strength must be in (0, 1]")
    if args.refine_steps is not None and not 1 <= args.refine_steps <= 200:
        parser.error("--refine-steps must be 1..200")
    if args.face_strength is not None and not args.enhance_face:
        parser.error("--face-strength only applies with --enhance-face")
    if args.face_strength is not None and not 0 < args.face_strength <= 1:
        parser.error("--face-strength must be in (0, 1]")


# The seed application's defaults, under a recipe's options and the command line's.
SEED_DEFAULTS: dict[str, Any] = {"width": 1024, "height": 1024, "steps": 50, "guidance_scale": 8.0}


def _cli_recipe(args: argparse.Namespace, settings: Settings) -> Any:
    """The command line as a job recipe, resolved by the job API's own rules (before any model loads)."""
    from pydantic import ValidationError

    from cofounder_agent.contract.errors import DomainError
    from cofounder_agent.contract.fields import CLI_FIELDS
    from cofounder_agent.jobs.recipe_book import RecipeBook
    from cofounder_agent.jobs.resolve import resolve_face_models, resolve_recipe
    from cofounder_agent.schemas.jobs import JobCreate

    given = {
        "negative_prompt": args.negative,
        "seed": args.seed,
        "width": args.width,
        "height": args.height,
        "steps": args.base_steps,
        "guidance_scale": args.guidance,
        "scheduler": args.scheduler,
    }
    refiner = {"switch_at": args.switch_at, "steps": args.refine_steps, "strength": args.refine_strength}
    options: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    if args.refiner_mode is not None or any(value is not None for value in refiner.values()):
        mode = args.refiner_mode or settings.image_refiner_mode
        options["refiner"] = {"mode": mode} | {key: value for key, value in refiner.items() if value is not None}
    try:
        template: dict[str, Any] = {}
        if args.recipe is not None:
            try:
                book = RecipeBook(settings.image_data_dir / "recipes")
                template = book.get(args.recipe).model_dump(exclude_none=True)
            except DomainError as exc:
                raise SystemExit(f"error: --recipe: {exc.message}") from None
        stages = [*template.pop("stages", [])]
        explicit = []  # the stages the flags ask for: without a face model, an error, not a skip
        if args.enhance_face:  # faces first, at the size face models work at; then enlarge
            explicit.append(len(stages))
            stages.append({"type": "face_restore", "strength": args.face_strength or 0.5})
        if args.upscale:
            stages.append({"type": "upscale", "factor": args.upscale_factor})
        data = {**SEED_DEFAULTS, **template, **options, "prompt": args.prompt, "stages": stages}
        recipe = resolve_recipe(JobCreate.model_validate(data), settings, CLI_FIELDS)
        resolve_face_models(recipe, settings, explicit)
        return recipe
    except DomainError as exc:
        raise SystemExit(f"error: {exc.message}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SystemExit(f"error: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


async def _generate(args: argparse.Namespace, settings: Settings) -> None:
    from cofounder_agent.contract.stage import StageReport
    from cofounder_agent.jobs.resolve import job_params
    from cofounder_agent.services.image_service import ImageService
    from cofounder_agent.services.metadata import generation_metadata
    from cofounder_agent.storage import encode_png

    recipe = _cli_recipe(args, settings)
    service = ImageService(settings)
    service.start()
    try:
        if not await service.wait_ready():
            raise SystemExit(f"error: could not load the model: {service.status.error}")
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for params in job_params(recipe):  # one per image (num_images from a recipe)
            result = await service.generate(params)
            pictures, records = [result.image], []
            for index, spec in enumerate(recipe.stages):  # the seed's application: refine, upscale, ...
                out = await service.run_stage(spec, pictures[0], params, index)
                pictures = out.variations or [out.image]
                record = out.record or StageReport(index=index, spec=spec.model_dump())
                records.append(record.model_dump(mode="json"))
                if record.outcome != "ok":
                    print(f"warning: {spec.type} not applied: {record.detail}", file=sys.stderr)
            metadata = {**generation_metadata(result, service.status), "recipe_stages": records}
            for number, picture in enumerate(pictures):
                suffix = f"-{number + 1}" if len(pictures) > 1 else ""
                path = args.output_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{params.seed}{suffix}.png"
                path.write_bytes(encode_png(picture, metadata))
                line = {"path": str(path), "seed": params.seed, "size": list(picture.size), "timings": result.timings}
                print(json.dumps(line))
            if result.refiner_fallback_reason:
                print(f"warning: refiner not applied: {result.refiner_fallback_reason}", file=sys.stderr)
    finally:
        await service.close()


async def _db(action: str, url: str) -> int:
    """Migrate or report the job store's schema; print the revision it is at."""
    from sqlalchemy.exc import SQLAlchemyError

    from cofounder_agent.migrations import current_revision, head_revision, redacted, upgrade

    try:
        revision = await upgrade(url) if action == "upgrade" else await current_revision(url)
    except (SQLAlchemyError, OSError) as exc:
        print(f"error: {redacted(url)}: {exc}", file=sys.stderr)
        return 1
    behind = "" if revision == head_revision() else f" (newest: {head_revision()}; run: cofounder-agent db upgrade)"
    print(f"{redacted(url)}: {revision or 'no revision (empty, or made before migrations)'}{behind}")
    return 0


def _settings() -> Settings:
    """The settings from the environment; a bad one stops the program with its reason, not a traceback."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        reasons = []
        for error in exc.errors():
            name, reason = ".".join(map(str, error["loc"])).upper(), error["msg"].removeprefix("Value error, ")
            reasons.append(reason if reason.startswith(name) else f"{name}: {reason}")
        raise SystemExit("error: " + "; ".join(reasons)) from None


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command in JOB_COMMANDS:
        if args.command == "submit" and args.output_dir is not None and not args.wait:
            parser.error("-o/--output-dir needs --wait")
        sys.exit(run_job_command(args))
    settings = _settings()
    if (reason := refused(args, settings)) is not None:
        print(reason, file=sys.stderr)
        sys.exit(REFUSED)
    if args.command == "serve":
        import uvicorn

        from cofounder_agent.main import create_app

        configure_logging(settings.image_log_level, settings.image_log_file, settings.image_log_format)
        app = create_app(settings, embedded_worker=not args.no_worker)
        # Open event streams last as long as their job: on SIGTERM give them 5 s, then close
        # them, so shutdown (which re-queues the running job) happens within the grace period.
        uvicorn.run(app, host=args.host, port=args.port, log_config=None, timeout_graceful_shutdown=5)
    elif args.command == "worker":
        configure_logging(settings.image_log_level, settings.image_log_file, settings.image_log_format)
        sys.exit(run_worker(settings))
    elif args.command == "workers":
        configure_logging("WARNING", None)
        sys.exit(run_workers_command(args, settings))
    elif args.command == "generate":
        _check_generate_args(args, parser)
        configure_logging(settings.image_log_level, None)
        asyncio.run(_generate(args, settings))
    elif args.command == "bench":
        from cofounder_agent.bench import run_suite

        configure_logging("WARNING", None)
        run_suite(args)
    elif args.command == "db":
        configure_logging(settings.image_log_level, None)
        sys.exit(asyncio.run(_db(args.action, settings.database_url)))
    elif args.command == "export-tiny":
        from cofounder_agent.engine.tiny import export_tiny

        base, refiner = export_tiny(args.directory)
        print(f"wrote {base} and {refiner}\nuse: IMAGE_MODEL={base} IMAGE_REFINER_MODEL={refiner}")


if __name__ == "__main__":
    main()
