"""Prometheus metrics: queue depth, jobs by status, stage and job latency, the workers, GPU memory."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from cofounder_agent.jobs.store import Store
from cofounder_agent.jobs.tables import JobRow
from cofounder_agent.services.fleet import Fleet

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)


class Metrics:
    """One registry per app (not the process-global one), so several apps never collide."""

    def __init__(self, db: Store, fleet: Fleet, in_flight: Callable[[], int] | None = None) -> None:
        self.db, self.fleet = db, fleet
        self.registry = CollectorRegistry()
        if in_flight is not None:
            # Read at scrape time (the scrape itself counts as one): shows no request outlives its client.
            requests = Gauge("cofounder_http_requests_in_flight", "HTTP requests being handled", registry=self.registry)
            requests.set_function(in_flight)
        self.queue_depth = Gauge("cofounder_queue_depth", "Jobs waiting to run", registry=self.registry)
        self.jobs = Gauge("cofounder_jobs", "Jobs in the store by status", ["status"], registry=self.registry)
        self.job_seconds = Histogram(
            "cofounder_job_seconds", "Run time of finished jobs", ["status"], buckets=BUCKETS, registry=self.registry
        )
        self.stage_seconds = Histogram(
            "cofounder_stage_seconds", "Time per engine stage", ["stage"], buckets=BUCKETS, registry=self.registry
        )
        self.gpu_memory = Gauge(
            "cofounder_gpu_memory_bytes", "GPU memory allocated by torch", ["device", "kind"], registry=self.registry
        )
        # Per worker, from the workers table: every replica reports the whole fleet.
        labels = ["worker", "device"]
        self.workers_live = Gauge("cofounder_workers_live", "Workers that beat recently", registry=self.registry)
        self.worker_ready = Gauge(
            "cofounder_worker_ready", "1 when the worker's models are loaded", labels, registry=self.registry
        )
        self.worker_jobs = Gauge(
            "cofounder_worker_running_jobs", "Jobs the worker runs now", labels, registry=self.registry
        )
        self.worker_heartbeat = Gauge(
            "cofounder_worker_heartbeat_age_seconds", "Seconds since its last heartbeat", labels, registry=self.registry
        )

    async def on_finish(self, job: JobRow) -> None:
        """Worker hook: record a finished job's latencies."""
        if job.seconds is not None:
            self.job_seconds.labels(job.status).observe(job.seconds)
        for result in job.results:
            for stage in result.get("stages", []):
                self.stage_seconds.labels(stage["name"]).observe(stage["seconds"])

    async def render(self) -> bytes:
        """Refresh the gauges that are read from the store, then the text exposition."""
        counts = await self.db.count_by_status()
        for status in STATUSES:
            self.jobs.labels(status).set(counts.get(status, 0))
        self.queue_depth.set(counts.get("queued", 0))
        live = await self.fleet.workers()
        self.workers_live.set(len(live))
        for gauge in (self.worker_ready, self.worker_jobs, self.worker_heartbeat):
            gauge.clear()  # a worker gone from the table goes from the scrape too
        for worker in live:
            self.worker_ready.labels(worker.id, worker.device).set(int(worker.ready))
            self.worker_jobs.labels(worker.id, worker.device).set(len(worker.current_job_ids))
            self.worker_heartbeat.labels(worker.id, worker.device).set(worker.heartbeat_age_s)
        # Only this process's engines: a replica has none (and never imports torch).
        for device, memory in (await self.fleet.gpu_memory()).items():
            for kind, value in memory.items():
                self.gpu_memory.labels(device, kind).set(value)
        return generate_latest(self.registry)
