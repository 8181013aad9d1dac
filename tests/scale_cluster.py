"""The scale scenario's harness: N API replicas and M workers on a real PostgreSQL, as processes.

The processes themselves are started and watched by :class:`cofounder_agent.bench.cluster.Cluster`
(the scale bench starts the same ones); this adds what the tests read: jobs, event streams and
the worker that ran each attempt. Every wait polls states with the outer limit ``LIMIT_S``; a
failure's message carries the tail of every process's log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from cofounder_agent.bench.cluster import Cluster
from conftest import LIMIT_S, TERMINAL

Event = tuple[int, str, dict[str, Any]]  # (id, event type, data)


@dataclass
class Scene:
    """The cluster and which of its processes are the two live API replicas and the live workers."""

    cluster: Cluster
    apis: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)

    def url(self, index: int) -> str:
        """API replica ``index`` (0 = A, 1 = B)."""
        url = self.cluster.processes[self.apis[index]].url
        assert url is not None
        return url

    def submit(self, index: int, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return httpx.post(f"{self.url(index)}/v1/jobs", json=body, headers=headers, timeout=60)

    def job(self, job_id: str, index: int = 0) -> dict[str, Any]:
        answer = httpx.get(f"{self.url(index)}/v1/jobs/{job_id}", timeout=60)
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        return job

    def until_job(self, job_id: str, check: Any, what: str, index: int = 0) -> dict[str, Any]:
        """Poll the job through replica ``index`` until ``check(job)`` holds; return it."""
        seen: dict[str, Any] = {}

        def holds() -> bool:
            seen.update(self.job(job_id, index))
            return bool(check(seen))

        self.cluster.until(holds, f"{what} (job {job_id}: {seen.get('status')}, step {seen.get('step')})")
        return dict(seen)

    def wait_ended(self, job_ids: list[str], index: int = 0) -> list[dict[str, Any]]:
        """Wait until every job has ended; their final states, in order."""
        for job_id in job_ids:
            self.until_job(job_id, lambda j: j["status"] in TERMINAL, "the job did not end", index)
        return [self.job(job_id, index) for job_id in job_ids]

    def worker_ids(self) -> dict[str, str]:
        """Worker process name -> its id in jobs' ``attempt_workers``."""
        return self.cluster.worker_ids(self.apis[0])

    def add_worker(self, name: str) -> None:
        """Start one more worker and wait until the replicas list it ready."""
        self.cluster.start_worker(name)
        self.cluster.wait_workers(self.apis[0], name)
        self.workers.append(name)

    def add_api(self, name: str, **settings: str) -> None:
        """Start one more replica and wait until it is ready (the caller says whether it joins ``apis``)."""
        self.cluster.start_api(name, **settings)
        self.cluster.wait_ready(name)


def read_events(url: str, job_id: str, last_event_id: int | None = None, count: int | None = None) -> list[Event]:
    """Follow a job's stream (to its end, or for ``count`` events, then disconnect)."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    events: list[Event] = []
    with (
        httpx.Client(base_url=url, timeout=LIMIT_S) as client,
        connect_sse(client, "GET", f"/v1/jobs/{job_id}/events", headers=headers) as source,
    ):
        assert source.response.status_code == 200, source.response.read()
        for sse in source.iter_sse():
            events.append((int(sse.id), sse.event, sse.json()))
            if count is not None and len(events) >= count:
                break
    return events


@contextmanager
def scale_scene(root: Path, database_url: str, apis: int = 2, workers: int = 2, **settings: str) -> Iterator[Scene]:
    """``apis`` replicas (api-a, api-b, ...) and ``workers`` workers on one database, all ready; stopped after."""
    # One torch thread per worker: two workers on two cores, not four threads fighting for them.
    cluster = Cluster(root, database_url, {"OMP_NUM_THREADS": "1", **settings}, limit_s=LIMIT_S)
    scene = Scene(
        cluster,
        apis=[f"api-{chr(ord('a') + i)}" for i in range(apis)],
        workers=[f"worker-{i + 1}" for i in range(workers)],
    )
    with cluster:
        for name in scene.workers:
            cluster.start_worker(name)
        for name in scene.apis:
            cluster.start_api(name)
        cluster.wait_ready(*scene.apis)
        cluster.wait_workers(scene.apis[0], *scene.workers)
        yield scene
