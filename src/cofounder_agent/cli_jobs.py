"""The CLI's job commands: submit, status, wait, cancel and download against a running server."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cofounder_agent.cli_flags import add_recipe_flags, flag_stages, job_body
from cofounder_agent.cli_progress import ProgressBar, step_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from cofounder_agent.client import Client
    from cofounder_agent.schemas.jobs import JobPublic


def add_job_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument(
        "--server",
        default=os.environ.get("COFOUNDER_URL", "http://127.0.0.1:8000"),
        help="server URL (default: $COFOUNDER_URL or http://127.0.0.1:8000)",
    )
    server.add_argument("--api-key", default=os.environ.get("IMAGE_API_KEY"), help="default: $IMAGE_API_KEY")

    submit = sub.add_parser("submit", parents=[server], help="queue a job on a running server")
    submit.add_argument("prompt")
    add_recipe_flags(submit)
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


def _print_job(job: JobPublic) -> None:
    print(job.model_dump_json(indent=2))


def _recipe(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    """The job body: the recipe flags as given (the server fills in the rest and validates it)."""
    # A body's stages replace its named recipe's: keep the recipe's, as `generate` does.
    template = client.recipe(args.recipe).stages if args.recipe is not None and flag_stages(args) else None
    stages = [stage.model_dump(exclude_none=True) for stage in template or []]
    extra = {"priority": args.priority, "board_id": args.board}
    return job_body(args, stages) | {key: value for key, value in extra.items() if value is not None}


def _show_progress(client: Client, job_id: str) -> None:
    """Draw the progress bar (on a terminal) from the job's events until it ends."""
    with ProgressBar() as bar:
        for event in client.events(job_id):
            data, description = event.data, None
            if event.type == "queued":
                description = f"queued, position {data.get('position')}"
            elif event.type == "step":
                description = step_text(data.get("stage"), data.get("step"), data.get("total"))
            elif event.terminal:
                description = event.type
            elif data.get("stage"):  # started, stage, running; an image event keeps the last stage shown
                description = data["stage"]
            bar.show(description, 1.0 if event.type == "succeeded" else data.get("progress"))


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
    job = client.submit(_recipe(client, args))
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


def run_job_command(args: argparse.Namespace) -> int:
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
