"""Suite ``scale``: jobs/s with 1 and 2 worker processes, and the distributed path's latency.

Everything runs as processes on loopback (bench/cluster.py), on a PostgreSQL server this suite
starts (bench/pgserver.py): one API replica (``serve --no-worker``) and two workers
(``worker``), tiny model, CPU. Throughput: a batch of jobs submitted at once, timed from the
first job's creation to the last one's end (the database's timestamps), with both workers
running and with one of them paused (SIGSTOP, so it claims nothing), in alternating rounds.
Latency: one small job, submit to terminal event over SSE, on the distributed path and on the
embedded default (``serve`` on SQLite), alternating too; medians and their ratios.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from cofounder_agent.bench.cluster import Cluster
from cofounder_agent.bench.common import Report, median, percentile
from cofounder_agent.bench.pgserver import create_database, postgres_server

TERMINAL = {"succeeded", "failed", "cancelled"}
THROUGHPUT = "jobs/s, 2 workers / 1 worker (median of per-round ratios)"
LATENCY = "latency, distributed / embedded (median of per-round ratios)"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--scale-jobs", type=int, default=24, help="jobs per throughput round")
    group.add_argument("--scale-steps", type=int, default=20, help="denoising steps of every job")
    group.add_argument("--scale-size", type=int, default=128, help="image side of the throughput jobs")
    group.add_argument("--scale-rounds", type=int, default=3, help="alternating rounds of each comparison")
    group.add_argument("--scale-runs", type=int, default=5, help="latency samples per path and round")
    group.add_argument("--scale-latency-size", type=int, default=64, help="image side of the latency job")
    group.add_argument("--scale-threads", type=int, default=1, help="torch threads per worker (OMP_NUM_THREADS)")


def _body(size: int, steps: int, seed: int) -> dict[str, Any]:
    return {"prompt": f"a harbour {seed}", "width": size, "height": size, "steps": steps, "seed": seed}


def _when(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _throughput(cluster: Cluster, url: str, jobs: int, size: int, steps: int, seed: int) -> dict[str, Any]:
    """Submit ``jobs`` at once, wait for them all; jobs/s over the database's timestamps."""
    with httpx.Client(base_url=url, timeout=60) as client:
        ids = []
        for n in range(jobs):
            answer = client.post("/v1/jobs", json=_body(size, steps, seed + n))
            answer.raise_for_status()
            ids.append(answer.json()["id"])

        def idle() -> bool:
            counts = [
                client.get("/v1/jobs", params={"status": s, "limit": 1}).json()["count"] for s in ("queued", "running")
            ]
            return counts == [0, 0]

        cluster.until(idle, "the throughput jobs did not end")
        done = [client.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
    failed = [job for job in done if job["status"] != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} job(s) did not succeed: {failed[0]['status']}: {failed[0]['error']}")
    seconds = max(_when(j["finished_at"]) for j in done) - min(_when(j["created_at"]) for j in done)
    workers = {w for job in done for w in job["attempt_workers"]}
    return {"jobs_per_s": jobs / seconds, "seconds": seconds, "workers_used": len(workers)}


def _latency(url: str, size: int, steps: int, seed: int) -> float:
    """One job: seconds from its submit to its terminal event on the stream."""
    with httpx.Client(base_url=url, timeout=300) as client:
        start = time.perf_counter()
        answer = client.post("/v1/jobs", json=_body(size, steps, seed))
        answer.raise_for_status()
        job_id = answer.json()["id"]
        with connect_sse(client, "GET", f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "0"}) as source:
            for sse in source.iter_sse():
                if sse.event in TERMINAL:
                    if sse.event != "succeeded":
                        raise RuntimeError(f"the latency job {job_id} {sse.event}: {sse.data}")
                    return time.perf_counter() - start
    raise RuntimeError(f"the stream of {job_id} ended without a terminal event")


def _compare_workers(cluster: Cluster, url: str, args: argparse.Namespace, report: Report) -> None:
    """Rounds of 1 worker (the second paused) and 2 workers, in alternating order."""
    rates: dict[int, list[float]] = {1: [], 2: []}
    used: dict[int, set[int]] = {1: set(), 2: set()}
    ratios = []
    for round_ in range(args.scale_rounds):
        for count in (1, 2) if round_ % 2 == 0 else (2, 1):
            if count == 1:
                cluster.kill("worker-2", signal.SIGSTOP)  # idle (the queue is empty): it holds no job
            try:
                seed = 1000 * (round_ + 1) + 100 * count
                result = _throughput(cluster, url, args.scale_jobs, args.scale_size, args.scale_steps, seed)
            finally:
                if count == 1:
                    cluster.kill("worker-2", signal.SIGCONT)
            rates[count].append(result["jobs_per_s"])
            used[count].add(result["workers_used"])
        ratios.append(rates[2][-1] / rates[1][-1])
    for count in (1, 2):
        report.rows.append(
            {
                "measure": "throughput",
                "path": f"{count} worker{'s' if count > 1 else ''}",
                "median": median(rates[count]),
                "unit": "jobs/s",
                "rounds": ", ".join(f"{r:.3g}" for r in rates[count]),
                "workers_used": ",".join(str(n) for n in sorted(used[count])),
            }
        )
    report.summary[THROUGHPUT] = median(ratios)


def _compare_paths(cluster: Cluster, urls: dict[str, str], args: argparse.Namespace, report: Report) -> None:
    """Rounds of ``runs`` small jobs on each path, alternating which goes first."""
    size, steps = args.scale_latency_size, args.scale_steps
    samples: dict[str, list[float]] = {path: [] for path in urls}
    ratios = []
    for url in urls.values():
        _latency(url, size, steps, 0)  # warm-up: the first job pays one-off costs
    for round_ in range(args.scale_rounds):
        order = list(urls) if round_ % 2 == 0 else list(reversed(urls))
        medians = {}
        for path in order:
            times = [_latency(urls[path], size, steps, 10 * round_ + n) for n in range(args.scale_runs)]
            samples[path] += times
            medians[path] = median(times)
        ratios.append(medians["distributed"] / medians["embedded"])
    for path, times in samples.items():
        report.rows.append(
            {
                "measure": f"latency, {size}x{size}",
                "path": path,
                "median": median(times),
                "unit": "s",
                "rounds": f"p90 {percentile(times, 0.9):.3g}, n={len(times)}",
            }
        )
    report.summary[LATENCY] = median(ratios)


def run(args: argparse.Namespace) -> Report:
    report = Report("scale")
    threads = str(args.scale_threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as root, postgres_server() as admin:
        settings = {"OMP_NUM_THREADS": threads, "IMAGE_LOG_LEVEL": "WARNING", "IMAGE_MAX_QUEUE": "10000"}
        with Cluster(Path(root) / "cluster", create_database(admin), settings) as cluster:
            api = cluster.start_api("api")
            embedded = cluster.start_serve("embedded", IMAGE_DATA_DIR=str(Path(root) / "embedded"))
            for name in ("worker-1", "worker-2"):
                cluster.start_worker(name)
            cluster.wait_ready("api", "embedded")
            cluster.wait_workers("api", "worker-1", "worker-2")
            assert api.url is not None and embedded.url is not None
            _throughput(cluster, api.url, 2, args.scale_size, args.scale_steps, 0)  # warm-up
            _compare_workers(cluster, api.url, args, report)
            _compare_paths(cluster, {"distributed": api.url, "embedded": embedded.url}, args, report)
    cores = os.cpu_count()
    report.summary["load average (1 min) before / after"] = f"{load_before:.2f} / {os.getloadavg()[0]:.2f}"
    report.notes += [
        f"tiny model on the CPU; throughput: {args.scale_jobs} jobs of {args.scale_size}x{args.scale_size}, "
        f"{args.scale_steps} steps, per round; {args.scale_rounds} alternating rounds; "
        f"latency: {args.scale_runs} jobs per path and round",
        f"this host has {cores} CPU cores: the two workers ({threads} torch thread(s) each) contend for them with "
        "each other, the API replica and PostgreSQL, so 2x one worker is the ceiling here, less what those take; "
        "with one worker per GPU, the GPUs do the work and the ceiling is the GPU count; "
        "a load average above the core count means other processes took part of them too",
        "distributed: API replica + worker on PostgreSQL (claim by SKIP LOCKED, events by LISTEN/NOTIFY); "
        "embedded: `serve` (API and worker in one process) on SQLite",
    ]
    return report
