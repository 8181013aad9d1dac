"""Issue 12's scenario: 2 API replicas and 2 workers (tiny model) on a real PostgreSQL, as processes.

One cluster for the module; the points run in order and each leaves two live replicas and two
ready workers behind (a killed process is replaced). No timing assumption: every wait polls
states until the outer limit, and "stopped early" is counted in steps, not seconds.
"""

from __future__ import annotations

import signal
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from postgres import create_database
from scale_cluster import Scene, read_events, scale_scene

pytestmark = pytest.mark.slow

SMALL: dict[str, Any] = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 8}
# Long enough to be caught running (hundreds of steps' time), small in memory.
SLOW: dict[str, Any] = {"prompt": "a long night", "width": 256, "height": 256, "steps": 60}
TERMINAL_EVENTS = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str) -> Iterator[Scene]:
    with scale_scene(tmp_path_factory.mktemp("scale"), create_database(postgres_admin_url)) as scene:
        yield scene


def _consecutive(events: list[tuple[int, str, dict[str, Any]]]) -> bool:
    ids = [seq for seq, _, _ in events]
    return ids == list(range(1, len(ids) + 1))


def test_a_jobs_across_both_apis_succeed_and_both_workers_ran_some(scene: Scene) -> None:
    submitted = [scene.submit(i % 2, {**SMALL, "seed": i}) for i in range(20)]
    assert [r.status_code for r in submitted] == [202] * 20, [r.text for r in submitted if r.status_code != 202]
    done = scene.wait_ended([r.json()["id"] for r in submitted], index=1)
    assert [job["status"] for job in done] == ["succeeded"] * 20
    assert all(len(job["image_ids"]) == 1 and len(job["attempt_workers"]) == 1 for job in done)
    ran = Counter(job["attempt_workers"][0] for job in done)
    assert set(ran) == set(scene.worker_ids().values()), ran  # both workers, and no one else


def test_b_events_followed_on_the_other_api_and_resumed_across_apis(scene: Scene) -> None:
    # Followed on B from its first event to the end, for a job submitted on A.
    first = scene.submit(0, {**SMALL, "steps": 12, "seed": 101}).json()
    followed = read_events(scene.url(1), first["id"], last_event_id=0)
    assert _consecutive(followed)
    kinds = [kind for _, kind, _ in followed]
    assert kinds[:2] == ["queued", "started"] and kinds[-1] == "succeeded"
    assert sum(kind in TERMINAL_EVENTS for kind in kinds) == 1

    # Some events on B, a disconnect, the rest on A from Last-Event-ID: nothing missing or repeated.
    second = scene.submit(0, {**SMALL, "width": 128, "height": 128, "steps": 30, "seed": 102}).json()
    head = read_events(scene.url(1), second["id"], last_event_id=0, count=3)
    tail = read_events(scene.url(0), second["id"], last_event_id=head[-1][0])
    assert tail and tail[-1][1] == "succeeded"
    assert _consecutive(head + tail)
    assert head + tail == read_events(scene.url(1), second["id"], last_event_id=0)  # the full replay


def test_c_a_running_job_cancelled_through_the_other_api_stops_early(scene: Scene) -> None:
    job = scene.submit(0, {**SLOW, "steps": 200, "seed": 201}).json()
    running = scene.until_job(job["id"], lambda j: j["status"] == "running" and j["step"] >= 1, "it did not run")
    assert running["attempt_workers"][-1] in scene.worker_ids().values()
    answer = httpx.delete(f"{scene.url(1)}/v1/jobs/{job['id']}", timeout=60)
    assert answer.status_code == 200, answer.text
    (ended,) = scene.wait_ended([job["id"]])
    assert ended["status"] == "cancelled" and ended["image_ids"] == []
    # Honoured at a step boundary long before the schedule's end: the worker's last step event.
    events = read_events(scene.url(1), job["id"], last_event_id=0)
    steps = [data for _, kind, data in events if kind == "step"]
    assert events[-1][1] == "cancelled" and "succeeded" not in {kind for _, kind, _ in events}
    # (Ensemble: the base stage is 80% of the 200 steps, the refiner never started.)
    last = steps[-1]
    assert last["stage"] == running["stage"] == "base" and running["step"] <= last["step"] < last["total"], last


def test_d_a_worker_killed_mid_job_costs_one_attempt_not_the_job(scene: Scene) -> None:
    ids = scene.worker_ids()
    slow = scene.submit(0, {**SLOW, "seed": 301}).json()
    behind = [scene.submit(1, {**SMALL, "seed": 310 + i}).json() for i in range(3)]
    running = scene.until_job(slow["id"], lambda j: j["status"] == "running" and j["step"] >= 2, "it did not run")
    victim = next(name for name, worker_id in ids.items() if worker_id == running["attempt_workers"][-1])
    survivor = next(name for name in scene.workers if name != victim)
    scene.cluster.kill(victim, signal.SIGKILL)
    scene.workers.remove(victim)

    done = scene.wait_ended([slow["id"], *(job["id"] for job in behind)], index=1)
    assert [job["status"] for job in done] == ["succeeded"] * 4  # nothing lost
    again = done[0]
    assert again["attempts"] == 2
    assert again["attempt_workers"] == [ids[victim], ids[survivor]]  # attempt 2 on the other worker
    kinds = Counter(kind for _, kind, _ in read_events(scene.url(0), slow["id"], last_event_id=0))
    assert kinds["succeeded"] == 1 and not kinds["failed"] and not kinds["cancelled"]  # finished once
    assert len(again["image_ids"]) == 1

    scene.add_worker("worker-3")  # two workers again for the points after


def test_e_an_api_killed_affects_no_job(scene: Scene) -> None:
    victim = scene.apis[0]
    jobs = [scene.submit(0, {**SMALL, "seed": 400 + i}).json() for i in range(4)]
    scene.cluster.kill(victim, signal.SIGKILL)
    scene.apis.remove(victim)
    done = scene.wait_ended([job["id"] for job in jobs])  # through the replica still up
    assert [job["status"] for job in done] == ["succeeded"] * 4
    assert all(httpx.get(f"{scene.url(0)}/v1/images/{job['image_ids'][0]}").status_code == 200 for job in done)

    scene.add_api("api-c")  # two replicas again
    scene.apis.append("api-c")


def test_f_one_idempotency_key_sent_to_both_apis_at_once_makes_one_job(scene: Scene) -> None:
    before = httpx.get(f"{scene.url(0)}/v1/jobs", params={"limit": 1}).json()["count"]
    made = []
    for round_ in range(3):
        key, start = f"both-{uuid.uuid4().hex}", threading.Barrier(2)

        body = {**SMALL, "seed": 500 + round_}

        def send(
            index: int, key: str = key, start: threading.Barrier = start, body: dict[str, Any] = body
        ) -> httpx.Response:
            start.wait()
            return scene.submit(index, body, key=key)

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(send, [0, 1]))
        # One made it (202), the other got the same job back (200), whichever came first.
        assert sorted(a.status_code for a in answers) == [200, 202], [a.text for a in answers]
        assert answers[0].json()["id"] == answers[1].json()["id"]
        made.append(answers[0].json()["id"])
    assert httpx.get(f"{scene.url(1)}/v1/jobs", params={"limit": 1}).json()["count"] == before + 3
    assert [job["status"] for job in scene.wait_ended(made)] == ["succeeded"] * 3


def test_g_the_queue_limit_holds_across_replicas(scene: Scene) -> None:
    limit, burst = 4, 12
    for name in ("api-q1", "api-q2"):
        scene.add_api(name, IMAGE_MAX_QUEUE=str(limit))
    urls = [scene.cluster.processes[name].url for name in ("api-q1", "api-q2")]
    queued = httpx.get(f"{urls[0]}/v1/jobs", params={"status": "queued", "limit": 1}).json()["count"]
    assert queued == 0  # every earlier point waited for its jobs
    # Paused workers claim nothing, so every accepted job stays queued: exactly `limit` fit.
    for name in scene.workers:
        scene.cluster.kill(name, signal.SIGSTOP)
    try:
        start = threading.Barrier(burst)

        def send(index: int) -> httpx.Response:
            start.wait()
            return httpx.post(f"{urls[index % 2]}/v1/jobs", json={**SMALL, "seed": 600 + index}, timeout=60)

        with ThreadPoolExecutor(burst) as pool:
            answers = list(pool.map(send, range(burst)))
        codes = Counter(a.status_code for a in answers)
        assert codes == {202: limit, 429: burst - limit}, [a.text for a in answers]
        assert {a.json()["error"]["code"] for a in answers if a.status_code == 429} == {"queue_full"}
        accepted = {a.json()["id"] for a in answers if a.status_code == 202}
        listed = httpx.get(f"{urls[1]}/v1/jobs", params={"status": "queued", "limit": 100}).json()
        assert {job["id"] for job in listed["data"]} == accepted
    finally:
        for name in scene.workers:
            scene.cluster.kill(name, signal.SIGCONT)
    assert [job["status"] for job in scene.wait_ended(sorted(accepted))] == ["succeeded"] * limit


def test_h_teardown_state_is_clean(scene: Scene) -> None:
    """After every point: two live replicas, two ready workers, nothing queued or running."""
    assert len(scene.apis) == 2 and len(scene.workers) == 2
    assert set(scene.cluster.wait_workers(scene.apis[0], *scene.workers)) == set(scene.workers)
    for status in ("queued", "running"):
        assert httpx.get(f"{scene.url(1)}/v1/jobs", params={"status": status}).json()["count"] == 0
