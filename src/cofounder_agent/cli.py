"""``cofounder-agent``: serve the API, generate in-process, export the tiny model, drive a server's jobs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cofounder_agent.config import Settings
from cofounder_agent.contract.params import MAX_SEED, REFINER_MODES, SCHEDULER_NAMES
from cofounder_agent.logging_setup import configure_logging

if TYPE_CHECKING:
    from collections.abc import Callable

    from cofounder_agent.client import Client
    from cofounder_agent.schemas.jobs import JobPublic


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cofounder-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (the container uses 0.0.0.0)")
    serve.add_argument("--port", type=int, default=8000)

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
    _add_job_parsers(sub)
    from cofounder_agent.bench import add_parser as add_bench_parser

    add_bench_parser(sub)
    return parser


def _add_job_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument(
        "--server",
        default=os.environ.get("COFOUNDER_URL", "http://127.0.0.1:8000"),
        help="server URL (default: $COFOUNDER_URL or http://127.0.0.1:8000)",
    )
    server.add_argument("--api-key", default=os.environ.get("IMAGE_API_KEY"), help="default: $IMAGE_API_KEY")

    submit = sub.add_parser("submit", parents=[server], help="queue a job on a running server")
    submit.add_argument("prompt")
    submit.add_argument("--negative", default=None, help="negative prompt")
    submit.add_argument("--seed", type=int, default=None)
    submit.add_argument("--width", type=int, default=None)
    submit.add_argument("--height", type=int, default=None)
    submit.add_argument("--steps", type=int, default=None)
    submit.add_argument("--guidance", type=float, default=None)
    submit.add_argument("--scheduler", choices=SCHEDULER_NAMES, default=None)
    submit.add_argument("--num-images", type=int, default=None)
    submit.add_argument("--refiner-mode", choices=REFINER_MODES, default=None)
    submit.add_argument("--priority", type=int, default=None, help="-10..10; higher runs first")
    submit.add_argument("--board", default=None, help="board id to file the images under")
    submit.add_argument("--wait", action="store_true", help="follow the job to its end")
    submit.add_argument("-o", "--output-dir", type=Path, default=None, help="with --wait: save the images here")

    for name, text in (("status", "show a job"), ("cancel", "cancel a queued or running job")):
        sub.add_parser(name, parents=[server], help=text).add_argument("job_id")
    wait = sub.add_parser("wait", parents=[server], help="follow a job to its end; exit 1 unless it succeeded")
    wait.add_argument("job_id")
    wait.add_argument("-o", "--output-dir", type=Path, default=None, help="save the images here")

    download = sub.add_parser("download", parents=[server], help="save an image")
    download.add_argument("image_id")
    download.add_argument("-o", "--output", type=Path, default=Path("."), help="file or directory (default: .)")


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


def _print_job(job: JobPublic) -> None:
    print(job.model_dump_json(indent=2))


def _recipe(args: argparse.Namespace) -> dict[str, Any]:
    # Only what was given: the server fills in the rest and is the one place that validates it.
    options = {
        "negative_prompt": args.negative,
        "seed": args.seed,
        "width": args.width,
        "height": args.height,
        "steps": args.steps,
        "guidance_scale": args.guidance,
        "scheduler": args.scheduler,
        "num_images": args.num_images,
        "priority": args.priority,
        "board_id": args.board,
    }
    recipe = {"prompt": args.prompt} | {key: value for key, value in options.items() if value is not None}
    if args.refiner_mode is not None:
        recipe["refiner"] = {"mode": args.refiner_mode}
    return recipe


def _show_progress(client: Client, job_id: str) -> None:
    """Draw a progress bar on stderr from the job's events until it ends."""
    from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type information

    with tqdm(total=100, file=sys.stderr, bar_format="{desc}{percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]") as bar:
        for event in client.events(job_id):
            data = event.data
            if event.type == "queued":
                bar.set_description(f"queued, position {data.get('position')}", refresh=False)
            elif event.type == "step":
                bar.set_description(f"{data.get('stage')} {data.get('step')}/{data.get('total')}", refresh=False)
            elif event.terminal:
                bar.set_description(event.type, refresh=False)
            elif data.get("stage"):  # started, stage, running; an image event keeps the last stage shown
                bar.set_description(data["stage"], refresh=False)
            progress = 1.0 if event.type == "succeeded" else data.get("progress")
            if progress is not None:
                bar.n = round(100 * progress)
            bar.refresh()


def _follow(client: Client, job_id: str, output_dir: Path | None) -> int:
    """Follow a job to its end; save its images when it succeeded; 0 if it did, else 1."""
    try:
        _show_progress(client, job_id)
    except KeyboardInterrupt:
        # Leaving is not cancelling: say so, since the job goes on running on the server.
        print(f"interrupted; job {job_id} goes on (cofounder-agent cancel {job_id} stops it)", file=sys.stderr)
        return 130
    job = client.get(job_id)
    _print_job(job)
    if job.status != "succeeded":
        print(f"error: job {job.status}: {job.error or 'no reason given'}", file=sys.stderr)
        return 1
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        for image_id in job.image_ids:
            print(f"saved {client.download(image_id, output_dir)}", file=sys.stderr)
    return 0


def _submit(client: Client, args: argparse.Namespace) -> int:
    job = client.submit(_recipe(args))
    if args.wait:
        return _follow(client, job.id, args.output_dir)
    _print_job(job)
    return 0


def _status(client: Client, args: argparse.Namespace) -> int:
    _print_job(client.get(args.job_id))
    return 0


def _wait(client: Client, args: argparse.Namespace) -> int:
    return _follow(client, args.job_id, args.output_dir)


def _cancel(client: Client, args: argparse.Namespace) -> int:
    _print_job(client.cancel(args.job_id))
    return 0


def _download(client: Client, args: argparse.Namespace) -> int:
    print(client.download(args.image_id, args.output))
    return 0


JOB_COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "submit": _submit,
    "status": _status,
    "wait": _wait,
    "cancel": _cancel,
    "download": _download,
}


def _run_job_command(args: argparse.Namespace) -> int:
    """Run a command against the server; failures become one ``error:`` line and exit code 1."""
    import httpx

    from cofounder_agent.client import ApiError, Client

    try:
        with Client(args.server, args.api_key) as client:
            return JOB_COMMANDS[args.command](client, args)
    except ApiError as exc:
        later = f" (retry after {exc.retry_after} s)" if exc.retry_after else ""
        print(f"error: {exc.message}{later}", file=sys.stderr)
    except httpx.HTTPError as exc:
        print(f"error: {args.server}: {exc}", file=sys.stderr)
    return 1


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
        sys.exit(_run_job_command(args))
    settings = _settings()
    if args.command == "serve":
        import uvicorn

        from cofounder_agent.main import create_app

        configure_logging(settings.image_log_level, settings.image_log_file, settings.image_log_format)
        # Open event streams last as long as their job: on SIGTERM give them 5 s, then close
        # them, so shutdown (which re-queues the running job) happens within the grace period.
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None, timeout_graceful_shutdown=5)
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
