"""``cofounder-agent``: serve the API, run workers, generate in-process, export the tiny model, drive jobs."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from cofounder_agent.cli_flags import check_recipe_flags
from cofounder_agent.cli_generate import add_generate_parser, check_generate_args, generate
from cofounder_agent.cli_jobs import JOB_COMMANDS, add_job_parsers, run_job_command
from cofounder_agent.cli_roles import REFUSED, add_role_parsers, refused, run_worker, run_workers_command
from cofounder_agent.config import Settings
from cofounder_agent.logging_setup import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cofounder-agent",
        description="Serve the image API, run workers, generate in-process, export the tiny model, drive jobs.",
        epilog="`cofounder-agent COMMAND --help` lists a command's flags and defaults.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (the container uses 0.0.0.0)")
    serve.add_argument("--port", type=int, default=8000)
    add_role_parsers(sub, serve)

    add_generate_parser(sub)

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
    if args.command in ("generate", "submit"):
        check_recipe_flags(args, parser)
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

        from cofounder_agent.main import GRACEFUL_SHUTDOWN_S, KEEP_ALIVE_S, create_app

        configure_logging(settings.image_log_level, settings.image_log_file, settings.image_log_format)
        app = create_app(settings, embedded_worker=not args.no_worker)
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_config=None,
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
    elif args.command == "worker":
        configure_logging(settings.image_log_level, settings.image_log_file, settings.image_log_format)
        sys.exit(run_worker(settings))
    elif args.command == "workers":
        configure_logging("WARNING", None)
        sys.exit(run_workers_command(args, settings))
    elif args.command == "generate":
        check_generate_args(args, parser)
        configure_logging(settings.image_log_level, None)
        asyncio.run(generate(args, settings))
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
