"""The process roles: `serve [--no-worker]`, `worker` (no HTTP) and `workers` (who is live, from the database)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

from cofounder_agent.config import Settings

if TYPE_CHECKING:
    from cofounder_agent.services.fleet import LiveWorker
    from cofounder_agent.services.worker_pool import WorkerPool

log = logging.getLogger("cofounder_agent.worker")

# Exit status of a role started where it cannot work (argparse's usage error is 2 as well).
REFUSED = 2
NEEDS_POSTGRES = (
    "error: {role} needs IMAGE_DATABASE_URL=postgresql+asyncpg://… (on SQLite the event bus is "
    "in-process, so only `cofounder-agent serve` with its embedded worker can run there)"
)


def add_role_parsers(sub: Any, serve: argparse.ArgumentParser) -> None:
    """`serve --no-worker`, `worker` and `workers`."""
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="an API replica: no engine here (torch is never loaded); `worker` processes run the jobs (PostgreSQL)",
    )
    sub.add_parser(
        "worker",
        help="run jobs on IMAGE_DEVICE (one worker per listed device), no HTTP server (PostgreSQL)",
        description="Load the models on each IMAGE_DEVICE entry, claim and run jobs; on SIGTERM or SIGINT "
        "stop at the next denoising step, give the job back to the queue and exit 0.",
    )
    workers = sub.add_parser("workers", help="list the live workers from the database (IMAGE_DATABASE_URL)")
    workers.add_argument("--json", action="store_true", help="one JSON object per worker, one per line")
    workers.add_argument(
        "--ready-here",
        action="store_true",
        help="print nothing much; exit 0 iff a live, ready worker runs on this host (a container healthcheck)",
    )


def refused(args: argparse.Namespace, settings: Settings) -> str | None:
    """Why this role cannot run on these settings (a line to print), or None."""
    role = "`cofounder-agent worker`" if args.command == "worker" else "`cofounder-agent serve --no-worker`"
    distributed = args.command == "worker" or (args.command == "serve" and args.no_worker)
    if distributed and settings.database_url.startswith("sqlite"):
        return NEEDS_POSTGRES.format(role=role)
    return None


def run_worker(settings: Settings) -> int:
    """The `worker` command: until SIGTERM or SIGINT; 0 after a clean stop."""
    return asyncio.run(_worker(settings))


async def _worker(settings: Settings) -> int:
    from cofounder_agent.jobs.ending import JobEnding
    from cofounder_agent.jobs.pgbus import event_bus
    from cofounder_agent.jobs.store import Store
    from cofounder_agent.migrations import redacted
    from cofounder_agent.services.worker_pool import WorkerPool
    from cofounder_agent.storage import ImageStore

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    db = Store(settings.database_url, lease_s=settings.image_lease_s)
    log.info("job store: %s", redacted(settings.database_url))
    await db.init()  # the same migration at start as the API, under the same lock
    files = ImageStore(settings.image_data_dir)
    bus = event_bus(db)
    pool = WorkerPool(db, bus, files, JobEnding(db, bus, files), settings)
    pool.start()
    ids = ", ".join(f"{w.id} on {w.settings.image_device}" for w in pool.workers)
    log.info("worker process on %s, pid %s: %s", socket.gethostname(), os.getpid(), ids)
    loading = asyncio.create_task(_log_ready(pool), name="log-ready")
    try:
        await stopping.wait()
        log.info("stopping: the running job(s) stop at the next step and go back to the queue")
    finally:
        loading.cancel()
        await pool.stop()
        await bus.close()
        await db.close()
    log.info("stopped")
    return 0


async def _log_ready(pool: WorkerPool) -> None:
    """Log "ready" once every engine has loaded (each worker's own line comes first)."""
    if await pool.wait_ready():
        log.info("ready")


def run_workers_command(args: argparse.Namespace, settings: Settings) -> int:
    """The `workers` command; with --ready-here, 0 iff a live ready worker runs on this host."""
    try:
        live = asyncio.run(_live(settings))
    except Exception as exc:  # the database away, or not migrated yet: a failed check, with its reason
        reason = str(exc).splitlines()[0] if str(exc) else ""
        print(f"error: could not read the workers table: {type(exc).__name__}: {reason}", file=sys.stderr)
        return 1
    if args.ready_here:
        here = [w for w in live if w.ready and w.host == socket.gethostname()]
        print(f"{len(here)} ready worker(s) on {socket.gethostname()}")
        return 0 if here else 1
    if args.json:
        for w in live:
            print(json.dumps(_row(w)))
    else:
        _print_table(live)
    return 0


async def _live(settings: Settings) -> list[LiveWorker]:
    from cofounder_agent.jobs.store import Store
    from cofounder_agent.services.fleet import Fleet

    db = Store(settings.database_url, lease_s=settings.image_lease_s)
    try:
        return await Fleet(db, {}, within_s=settings.image_lease_s).workers()
    finally:
        await db.close()


def _row(w: LiveWorker) -> dict[str, Any]:
    return {
        "id": w.id,
        "host": w.host,
        "pid": w.pid,
        "device": w.device,
        "model": w.model,
        "precision": w.precision,
        "ready": w.ready,
        "state": w.engine.state,
        "current_job_ids": w.current_job_ids,
        "heartbeat_age_s": w.heartbeat_age_s,
    }


def _print_table(live: list[LiveWorker]) -> None:
    header = ("ID", "HOST", "PID", "DEVICE", "MODEL", "PRECISION", "STATE", "JOBS", "BEAT")
    rows: list[tuple[str, ...]] = []
    for w in live:
        jobs, beat = ",".join(w.current_job_ids) or "-", f"{w.heartbeat_age_s:.0f}s ago"
        rows.append((w.id, w.host, str(w.pid), w.device, w.model, w.precision, w.engine.state, jobs, beat))
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for line in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    if not live:
        print("(no live worker)")
