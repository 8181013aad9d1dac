"""Drive a loopback server with a bounded mixed load and print what must be zero (issue #10).

    PYTHONPATH=src python scripts/mixed_load.py --spawn --clients 16 --duration 180
    PYTHONPATH=src python scripts/mixed_load.py --url http://127.0.0.1:8000 --json load.json

Exit status: 0 when every check is 0, 1 when one is not, 2 on bad options.
See docs/operations.md ("A mixed-load run").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from cofounder_agent.bench.load import LoadConfig, check_loopback, spawn_server
from cofounder_agent.bench.load_checks import render, run_load


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running server on loopback (127.0.0.1, localhost or ::1)")
    target.add_argument("--spawn", action="store_true", help="start a tiny-model server on a free port, stop it after")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds the clients act")
    parser.add_argument("--grace", type=float, default=300.0, help="seconds jobs get to end after the clients stop")
    parser.add_argument("--small", type=int, nargs=2, default=[64, 8], metavar=("SIZE", "STEPS"))
    parser.add_argument("--large", type=int, nargs=2, default=[512, 10], metavar=("SIZE", "STEPS"))
    parser.add_argument("--leave-after", type=float, default=1.0, help="synchronous clients give up after ~this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="sent as a Bearer token (a server with IMAGE_API_KEY)")
    parser.add_argument("--job-timeout", type=float, default=10.0, help="--spawn: IMAGE_JOB_TIMEOUT_S")
    parser.add_argument("--max-queue", type=int, default=64, help="--spawn: IMAGE_MAX_QUEUE")
    parser.add_argument("--batch-max", type=int, default=1, help="--spawn: IMAGE_BATCH_MAX")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the report as JSON")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.duration <= 0 or args.grace < 0:
        parser.error("--clients must be at least 1, --duration above 0 and --grace at least 0")
    if args.url is not None:
        try:
            args.url = check_loopback(args.url)
        except ValueError as exc:
            parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    config = LoadConfig(
        clients=args.clients,
        duration_s=args.duration,
        grace_s=args.grace,
        small_size=args.small[0],
        small_steps=args.small[1],
        large_size=args.large[0],
        large_steps=args.large[1],
        sync_leave_s=args.leave_after,
        seed=args.seed,
        api_key=args.api_key,
    )
    if args.spawn:
        settings = {
            "IMAGE_JOB_TIMEOUT_S": str(args.job_timeout),
            "IMAGE_MAX_QUEUE": str(args.max_queue),
            "IMAGE_BATCH_MAX": str(args.batch_max),
        }
        with tempfile.TemporaryDirectory(prefix="mixed-load-") as tmp, spawn_server(Path(tmp), settings) as url:
            report = asyncio.run(run_load(url, config))
            log = (Path(tmp) / "server.log").read_text(errors="replace")
            report["server_log_tracebacks"] = log.count("Traceback (most recent call last)")
    else:
        report = asyncio.run(run_load(args.url, config))
    print(render(report))
    if "server_log_tracebacks" in report:
        print(f"server log: {report['server_log_tracebacks']} traceback(s)")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
