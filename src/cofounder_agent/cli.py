"""``cofounder-agent``: serve the API, generate in-process, export the tiny model."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from cofounder_agent.config import Settings
from cofounder_agent.engine.params import MAX_SEED, REFINER_MODES, SCHEDULER_NAMES, GenerationParams
from cofounder_agent.logging_setup import configure_logging


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
    gen.add_argument("--width", type=int, default=1024)
    gen.add_argument("--height", type=int, default=1024)
    gen.add_argument("--base-steps", type=int, default=50)
    gen.add_argument("--guidance", type=float, default=8.0)
    gen.add_argument("--scheduler", choices=SCHEDULER_NAMES, default=None)
    gen.add_argument("--refiner-mode", choices=REFINER_MODES, default=None)
    gen.add_argument("--switch-at", type=float, default=None, help="ensemble: base share of the schedule")
    gen.add_argument("--refine-steps", type=int, default=None, help="img2img: refiner schedule length")
    gen.add_argument("--refine-strength", type=float, default=None, help="img2img: re-noising strength")

    export = sub.add_parser("export-tiny", help="write the built-in tiny model as diffusers folders")
    export.add_argument("directory", type=Path)
    return parser


def _check_generate_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    # The same bounds as the HTTP API, so the CLI fails early with the option's name.
    for name in ("width", "height"):
        value = getattr(args, name)
        if not 64 <= value <= 2048 or value % 8:
            parser.error(f"--{name} must be a multiple of 8 from 64 to 2048, not {value}")
    if not 1 <= args.base_steps <= 200:
        parser.error("--base-steps must be 1..200")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be 0..{MAX_SEED}")
    if args.switch_at is not None and not 0 < args.switch_at < 1:
        parser.error("--switch-at must be between 0 and 1")
    if args.refine_strength is not None and not 0 < args.refine_strength <= 1:
        parser.error("--refine-strength must be in (0, 1]")
    if args.refine_steps is not None and not 1 <= args.refine_steps <= 200:
        parser.error("--refine-steps must be 1..200")


async def _generate(args: argparse.Namespace, settings: Settings) -> None:
    import secrets

    from cofounder_agent.services.image_service import ImageService
    from cofounder_agent.services.metadata import generation_metadata
    from cofounder_agent.storage import encode_png

    params = GenerationParams(
        prompt=args.prompt,
        negative_prompt=args.negative,
        seed=args.seed if args.seed is not None else secrets.randbelow(MAX_SEED + 1),
        width=args.width,
        height=args.height,
        steps=args.base_steps,
        guidance_scale=args.guidance,
        scheduler=args.scheduler or settings.image_scheduler,
        refiner_mode=args.refiner_mode or settings.image_refiner_mode,
        switch_at=args.switch_at if args.switch_at is not None else settings.image_switch_at,
        refiner_steps=args.refine_steps if args.refine_steps is not None else settings.image_refiner_steps,
        refiner_strength=(
            args.refine_strength if args.refine_strength is not None else settings.image_refiner_strength
        ),
    )
    problem = params.schedule_problem()
    if problem is not None:  # checked before the (slow) model load
        option = {"refiner_strength": "--refine-strength", "switch_at": "--switch-at"}[problem[0]]
        raise SystemExit(f"error: {option}: {problem[1]}")
    service = ImageService(settings)
    service.start()
    try:
        if not await service.wait_ready():
            raise SystemExit(f"error: could not load the model: {service.status.error}")
        result = await service.generate(params)
        args.output_dir.mkdir(parents=True, exist_ok=True)
        path = args.output_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{params.seed}.png"
        path.write_bytes(encode_png(result.image, generation_metadata(result, service.status)))
        print(json.dumps({"path": str(path), "seed": params.seed, "timings": result.timings}))
        if result.refiner_fallback_reason:
            print(f"warning: refiner not applied: {result.refiner_fallback_reason}", file=sys.stderr)
    finally:
        await service.close()


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "serve":
        import uvicorn

        from cofounder_agent.main import create_app

        configure_logging(settings.image_log_level, settings.image_log_file, settings.image_log_format)
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None)
    elif args.command == "generate":
        _check_generate_args(args, parser)
        configure_logging(settings.image_log_level, None)
        asyncio.run(_generate(args, settings))
    elif args.command == "export-tiny":
        from cofounder_agent.engine.tiny import export_tiny

        base, refiner = export_tiny(args.directory)
        print(f"wrote {base} and {refiner}\nuse: IMAGE_MODEL={base} IMAGE_REFINER_MODEL={refiner}")


if __name__ == "__main__":
    main()
