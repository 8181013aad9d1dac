"""The whole service on a real PostgreSQL server: jobs, events, resume, cancel and restart over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
from httpx_sse import connect_sse

from conftest import LIMIT_S, make_settings, running_server, wait_job, wait_ready

FAST: dict[str, Any] = {"prompt": "a harbour at dawn", "width": 64, "height": 64, "steps": 4, "seed": 11}


def _events(client: httpx.Client, job_id: str, **headers: str) -> list[tuple[str, str, dict[str, Any]]]:
    with connect_sse(client, "GET", f"/v1/jobs/{job_id}/events", headers=headers) as source:
        return [(sse.id, sse.event, sse.json()) for sse in source.iter_sse()]


def test_the_service_runs_on_postgresql(tmp_path: Any, postgres_url: str) -> None:
    settings = make_settings(tmp_path, image_database_url=postgres_url)
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=LIMIT_S) as client:
        wait_ready(url)
        board = client.post("/v1/boards", json={"name": "harbours"}).json()
        job = client.post("/v1/jobs", json={**FAST, "board_id": board["id"]}, headers={"Idempotency-Key": "k1"})
        assert job.status_code == 202
        again = client.post("/v1/jobs", json={**FAST, "board_id": board["id"]}, headers={"Idempotency-Key": "k1"})
        assert again.json()["id"] == job.json()["id"]
        done = wait_job(client, job.json()["id"])
        assert done["status"] == "succeeded" and len(done["image_ids"]) == 1
        assert client.get(f"/v1/images/{done['image_ids'][0]}").status_code == 200
        assert [i["id"] for i in client.get(f"/v1/boards/{board['id']}/images").json()["data"]] == done["image_ids"]

        # The stream comes from the events table: numbered without gaps, resumable mid-way.
        assert [kind for _, kind, _ in _events(client, done["id"])] == ["succeeded"]  # the state now
        events = _events(client, done["id"], **{"Last-Event-ID": "0"})
        ids = [int(seq) for seq, _, _ in events]
        assert ids == list(range(1, len(ids) + 1)) and events[-1][1] == "succeeded"
        assert [kind for _, kind, _ in events][:2] == ["queued", "started"]
        assert _events(client, done["id"], **{"Last-Event-ID": events[2][0]}) == events[3:]

        # A cancel of a queued job (a higher-priority long job keeps the worker busy first).
        long = client.post("/v1/jobs", json={**FAST, "steps": 40, "num_images": 4, "priority": 5}).json()
        waiting = client.post("/v1/jobs", json=FAST).json()
        cancelled = client.delete(f"/v1/jobs/{waiting['id']}").json()
        assert cancelled["status"] == "cancelled" and cancelled["error"] == "cancelled before it started"
        stopped = client.delete(f"/v1/jobs/{long['id']}").json()
        assert stopped["status"] == "cancelled", stopped

    # A restart on the same database finds every job as it was left.
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=LIMIT_S) as client:
        wait_ready(url)
        statuses = {j["id"]: j["status"] for j in client.get("/v1/jobs").json()["data"]}
        assert statuses == {done["id"]: "succeeded", long["id"]: "cancelled", waiting["id"]: "cancelled"}
        assert client.get(f"/v1/jobs/{done['id']}").json()["image_ids"] == done["image_ids"]
