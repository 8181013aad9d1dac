"""Suite ``service``: the server on loopback under concurrent clients, against the bare engine.

The server runs as its own process (``cofounder-agent serve``, the tiny model) so the clients'
threads do not share its interpreter. Each client submits a job and follows it to the end
over the event stream, then the next: jobs/s, latency percentiles (submit to terminal event)
and errors, for 1, 4 and 16 clients, with micro-batching off and on. The overhead figure is
the bare engine's throughput (the same generations called in this process, one after
another) over the service's with one client, measured in alternating rounds.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cofounder_agent.bench.common import Report, median, percentile


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--service-clients", default="1,4,16", help="comma-separated client counts")
    group.add_argument("--service-jobs", type=int, default=32, help="jobs per client count")
    group.add_argument("--service-size", type=int, default=256, help="image side in pixels")
    group.add_argument("--service-steps", type=int, default=20)
    group.add_argument("--service-rounds", type=int, default=4, help="alternating engine/service rounds")
    group.add_argument("--service-round-jobs", type=int, default=4, help="generations per round")
    group.add_argument("--service-batch-max", type=int, default=4, help="IMAGE_BATCH_MAX of the batching-on runs")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def _server(data_dir: Path, batch_max: int) -> Iterator[str]:
    import httpx

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_", "PEXELS_"))}
    env |= {
        "IMAGE_MODEL": "tiny",
        "IMAGE_DATA_DIR": str(data_dir),
        "IMAGE_LOG_FILE": "",
        "IMAGE_LOG_LEVEL": "WARNING",
        "IMAGE_BATCH_MAX": str(batch_max),
        "IMAGE_MAX_QUEUE": "1000",
    }
    command = [sys.executable, "-m", "cofounder_agent", "serve", "--port", str(port)]
    # Our own CLI under this interpreter: a fixed command, no user input.
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the server did not become ready")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)


def _load(url: str, clients: int, jobs: int, body: dict[str, Any]) -> dict[str, Any]:
    """``clients`` threads share ``jobs`` jobs, each submitting and following one at a time."""
    import httpx

    from cofounder_agent.client import Client

    latencies: list[float] = []
    errors: list[str] = []
    batch_sizes: list[int] = []
    image_ids: list[str] = []
    lock = threading.Lock()
    numbers = iter(range(jobs))

    def take() -> int | None:
        with lock:
            return next(numbers, None)

    def client_loop() -> None:
        with Client(url, timeout=300) as client:
            while (number := take()) is not None:
                start = time.perf_counter()
                try:
                    ask = {**body, "seed": number, "prompt": f"{body['prompt']} {number}"}
                    job = client.wait(client.submit(ask).id)
                    error = None if job.status == "succeeded" else f"job {number}: {job.status}: {job.error}"
                except Exception as exc:  # counted, not raised: the error count is a figure
                    job, error = None, f"job {number}: {type(exc).__name__}: {exc}"
                seconds = time.perf_counter() - start
                with lock:
                    latencies.append(seconds)
                    if error is not None:
                        errors.append(error)
                    elif job is not None:
                        image_ids.append(job.results[0].image_id)

    start = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    with httpx.Client(base_url=url) as client:  # after the clock: how big each job's batch was
        for image_id in image_ids:
            batch_sizes.append(client.get(f"/v1/images/{image_id}/metadata").json()["metadata"].get("batch_size", 1))
    mean_batch = sum(batch_sizes) / len(batch_sizes) if batch_sizes else float("nan")
    return {"jobs_per_s": jobs / wall, "latencies": latencies, "errors": errors, "mean_batch": mean_batch}


def _direct_engine(size: int, steps: int) -> Any:
    """A function running ``count`` generations on the engine directly; returns generations/s."""
    from cofounder_agent.contract.params import GenerationParams, LoadOptions
    from cofounder_agent.engine.generate import TwoStageGenerator
    from cofounder_agent.engine.models import load_models

    engine = TwoStageGenerator(load_models(LoadOptions(model="tiny")))

    def rate(count: int) -> float:
        params = [
            GenerationParams(prompt=f"a harbour {n}", seed=n, width=size, height=size, steps=steps)
            for n in range(count)
        ]
        start = time.perf_counter()
        for p in params:
            engine.generate(p)
        return count / (time.perf_counter() - start)

    rate(1)  # warm-up
    return rate


def run(args: argparse.Namespace) -> Report:
    clients = [int(n) for n in args.service_clients.split(",")]
    size, steps, jobs = args.service_size, args.service_steps, args.service_jobs
    body = {"prompt": "a harbour", "width": size, "height": size, "steps": steps}
    report = Report("service")
    direct = _direct_engine(size, steps)
    errors: list[str] = []
    for batch_max in (1, args.service_batch_max):
        batching = "off" if batch_max == 1 else f"on (max {batch_max})"
        with tempfile.TemporaryDirectory() as data, _server(Path(data), batch_max) as url:
            _load(url, 1, 2, body)  # warm-up: the first generations pay one-off costs
            if batch_max == 1:
                # The overhead: the bare engine and the service (one client) in alternating
                # rounds of the same work, so the machine's drift cancels in the ratios.
                rounds = max(2, args.service_rounds)
                engine_rates, served_rates, ratios = [], [], []
                for _ in range(rounds):
                    engine_rates.append(direct(args.service_round_jobs))
                    served = _load(url, 1, args.service_round_jobs, body)
                    errors += served["errors"]
                    served_rates.append(served["jobs_per_s"])
                    ratios.append(engine_rates[-1] / served_rates[-1])
                report.rows.append(
                    {"path": "engine, direct", "clients": 1, "batching": "-", "jobs_per_s": median(engine_rates)}
                )
                report.summary["overhead (engine jobs/s / service jobs/s, 1 client; median of rounds)"] = median(ratios)
                report.summary["target"] = "<= 1.10, zero errors"
            for count in clients:
                result = _load(url, count, jobs, body)
                errors += result["errors"]
                lat = result["latencies"]
                report.rows.append(
                    {
                        "path": "HTTP + queue",
                        "clients": count,
                        "batching": batching,
                        "jobs_per_s": result["jobs_per_s"],
                        "p50_s": percentile(lat, 0.5),
                        "p95_s": percentile(lat, 0.95),
                        "p99_s": percentile(lat, 0.99),
                        "errors": len(result["errors"]),
                        "mean_batch": result["mean_batch"],
                    }
                )
    for row in report.rows:
        if row["path"] == "HTTP + queue" and row["batching"] != "off":
            match = next(r for r in report.rows if r.get("clients") == row["clients"] and r["batching"] == "off")
            row["vs_off"] = row["jobs_per_s"] / match["jobs_per_s"]
    report.summary["errors"] = len(errors)
    report.notes.append(f"tiny model, {size}x{size}, {steps} steps, ensemble; {jobs} jobs per client count")
    report.notes += [f"error: {e}" for e in errors[:5]]
    return report
