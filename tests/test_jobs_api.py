"""The job API on a real server: submit, stream, cancel, list, download, limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from conftest import LIMIT_S, make_settings, pixels, running_server, wait_job, wait_ready

FAST: dict[str, Any] = {"prompt": "a castle", "width": 64, "height": 64, "steps": 20}
# Slow enough on 2 CPU cores (~0.1 s a step) to be cancelled or timed out mid-run.
SLOW: dict[str, Any] = {"prompt": "a slow castle", "width": 384, "height": 384, "steps": 100}


@pytest.fixture(scope="module")
def job_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(make_settings(tmp_path_factory.mktemp("jobs"))) as url:
        wait_ready(url)
        yield url


def _submit(client: httpx.Client, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=body, headers=headers)
    assert response.status_code in (200, 202), response.text
    job: dict[str, Any] = response.json()
    return job


def _wait_running(client: httpx.Client, job_id: str, min_step: int = 2) -> dict[str, Any]:
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] == "running" and job["step"] >= min_step:
            return job
        time.sleep(0.02)
    raise TimeoutError(job_id)


def _collect_events(base_url: str, job_id: str, into: list[tuple[str, dict[str, Any]]]) -> None:
    with (
        httpx.Client(base_url=base_url, timeout=LIMIT_S) as client,
        connect_sse(client, "GET", f"/v1/jobs/{job_id}/events") as source,
    ):
        for sse in source.iter_sse():
            into.append((sse.event, sse.json()))


def test_five_jobs_stream_cancel_and_download(job_server: str) -> None:
    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        slow = _submit(client, SLOW)
        fast = [_submit(client, {**FAST, "seed": i}) for i in range(4)]
        assert all(job["status"] == "queued" for job in fast)
        assert [job["queue_position"] for job in fast] == [0, 1, 2, 3] or fast[0]["queue_position"] >= 0

        # Cancelled while queued: it never starts.
        queued = client.delete(f"/v1/jobs/{fast[2]['id']}").json()
        assert (queued["status"], queued["error"], queued["started_at"]) == (
            "cancelled",
            "cancelled before it started",
            None,
        )

        # Follow one fast job's events from before it starts to its end.
        events: list[tuple[str, dict[str, Any]]] = []
        follower = threading.Thread(target=_collect_events, args=(job_server, fast[0]["id"], events))
        follower.start()

        # Cancelled while running: it stops at the next denoising step.
        running = _wait_running(client, slow["id"])
        cancelled = client.delete(f"/v1/jobs/{slow['id']}").json()
        assert cancelled["status"] == "cancelled" and "cancelled while running" in cancelled["error"]
        assert cancelled["started_at"] is not None
        assert running["step"] < 100 and cancelled["image_ids"] == []

        follower.join(timeout=LIMIT_S)
        assert not follower.is_alive()
        kinds = [kind for kind, _ in events]
        assert kinds[0] in ("queued", "running") and kinds[-1] == "succeeded"
        assert "started" in kinds and kinds.count("step") == 20 and kinds.count("image") == 1
        stages = [(data["stage"], data["total"]) for kind, data in events if kind == "stage"]
        assert stages == [("base", 16), ("refiner", 4)]  # ensemble: 80 % of 20 steps, then the rest
        final = events[-1][1]
        assert len(final["image_ids"]) == 1 and final["error"] is None

        # Every succeeded image downloads.
        for job in (fast[0], fast[1], fast[3]):
            done = wait_job(client, job["id"])
            assert done["status"] == "succeeded" and done["progress"] == 1.0
            (image_id,) = done["image_ids"]
            png = client.get(f"/v1/images/{image_id}")
            assert png.headers["content-type"] == "image/png" and pixels(png.content).shape == (64, 64, 3)

        listed = client.get("/v1/jobs", params={"status": "cancelled", "limit": 100}).json()
        assert {slow["id"], fast[2]["id"]} <= {job["id"] for job in listed["data"]}


def test_running_job_stops_within_one_step(job_server: str) -> None:
    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        job = _submit(client, SLOW)
        events: list[tuple[str, dict[str, Any]]] = []
        follower = threading.Thread(target=_collect_events, args=(job_server, job["id"], events))
        follower.start()
        _wait_running(client, job["id"], min_step=3)
        steps_before = sum(1 for kind, _ in events if kind == "step")
        client.delete(f"/v1/jobs/{job['id']}")
        follower.join(timeout=LIMIT_S)
        assert not follower.is_alive()
        steps_after = sum(1 for kind, _ in events if kind == "step")
        assert events[-1][0] == "cancelled"
        # The step in flight when the cancel arrived may finish; no further one starts.
        assert steps_after - steps_before <= 2


def test_num_images_uses_consecutive_seeds(job_server: str) -> None:
    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        done = wait_job(client, _submit(client, {**FAST, "seed": 41, "num_images": 2})["id"])
        assert [r["seed"] for r in done["results"]] == [41, 42] and len(done["image_ids"]) == 2
        single = wait_job(client, _submit(client, {**FAST, "seed": 42})["id"])
        same = [pixels(client.get(f"/v1/images/{i}").content) for i in (done["image_ids"][1], single["image_ids"][0])]
        assert int(abs(same[0] - same[1]).max()) == 0


def test_idempotency_key_returns_the_same_job(job_server: str) -> None:
    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        first = client.post("/v1/jobs", json=FAST, headers={"Idempotency-Key": "order-17"})
        again = client.post("/v1/jobs", json=FAST, headers={"Idempotency-Key": "order-17"})
        assert (first.status_code, again.status_code) == (202, 200)
        assert first.json()["id"] == again.json()["id"]
        assert first.headers["Location"] == f"/v1/jobs/{first.json()['id']}"
        # The same key with another body: refused, naming the first request's job; the key
        # still gives the first job to its own body.
        other = client.post("/v1/jobs", json={**FAST, "prompt": "else"}, headers={"Idempotency-Key": "order-17"})
        assert other.status_code == 422, other.text
        error = other.json()["error"]
        assert (error["code"], error["field"]) == ("idempotency_key_reused", "Idempotency-Key")
        assert first.json()["id"] in error["message"] and "new key" in error["message"]
        third = client.post("/v1/jobs", json=FAST, headers={"Idempotency-Key": "order-17"})
        assert (third.status_code, third.json()["id"]) == (200, first.json()["id"])


def test_a_reused_key_is_a_422_in_the_openapi_document(job_server: str) -> None:
    paths = httpx.get(f"{job_server}/openapi.json").json()["paths"]
    keyed = {
        ("/v1/jobs", "422"),
        ("/api/media/generate-image", "422"),
        ("/sdapi/v1/txt2img", "422"),
        ("/sdapi/v1/img2img", "422"),
        ("/v1/images/generations", "400"),  # OpenAI's 400 is the API's 422
        ("/v1/images/edits", "400"),
        ("/v1/images/variations", "400"),
    }
    for path, status in keyed:
        assert "idempotency_key_reused" in paths[path]["post"]["responses"][status]["description"], path


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"input_image_ids": ["0" * 32], "stages": [{"type": "refine"}]}, "input_image_ids.0"),
        ({"input_image_ids": ["0" * 32]}, "stages"),
        ({"recipe": "no-such-recipe"}, "recipe"),
        ({"refiner": {"mode": "ensemble", "steps": 10}}, "refiner.steps"),
        ({"refiner": {"mode": "img2img", "steps": 2, "strength": 0.3}}, "refiner.strength"),
        ({"refiner": {"mode": "fast"}}, "refiner.mode"),
        ({"board_id": "0" * 32}, "board_id"),
        ({"num_images": 9}, "num_images"),
        ({"callback_url": "not a url"}, "callback_url"),
        ({"width": 1001}, "width"),
    ],
)
def test_bad_recipes_are_422_naming_the_field(job_server: str, patch: dict[str, Any], field: str) -> None:
    response = httpx.post(f"{job_server}/v1/jobs", json={**FAST, **patch})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize(
    ("board_id", "message"),
    [
        ("nope", "board_id: must be a board's id: 32 hex digits, as POST /v1/boards returns it"),
        ("0" * 31 + "G", "board_id: must be a board's id: 32 hex digits"),
        ("0" * 32, f"board_id: no such board {'0' * 32} (GET /v1/boards lists them)"),
    ],
)
def test_an_unknown_board_says_so_without_a_regex(job_server: str, board_id: str, message: str) -> None:
    response = httpx.post(f"{job_server}/v1/jobs", json={**FAST, "board_id": board_id})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "board_id" and error["message"].startswith(message), error
    assert "[0-9a-f]" not in error["message"] and "pattern" not in error["message"]


def test_unknown_and_finished_jobs(job_server: str) -> None:
    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        assert client.get("/v1/jobs/" + "0" * 32).status_code == 404
        assert client.get("/v1/jobs/" + "0" * 32 + "/events").status_code == 404
        assert client.delete("/v1/jobs/nope").status_code == 404
        done = wait_job(client, _submit(client, FAST)["id"])
        again = client.delete(f"/v1/jobs/{done['id']}")
        assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"
        finished_stream = client.get(f"/v1/jobs/{done['id']}/events")
        assert finished_stream.headers["content-type"].startswith("text/event-stream")
        assert "event: succeeded" in finished_stream.text


def test_full_queue_is_429_with_retry_after(tmp_path: Path) -> None:
    with running_server(make_settings(tmp_path, image_max_queue=1)) as url, httpx.Client(base_url=url) as client:
        wait_ready(url)
        running = _submit(client, SLOW)
        _wait_running(client, running["id"], min_step=1)
        _submit(client, FAST)  # the one queued slot
        full = client.post("/v1/jobs", json=FAST)
        assert full.status_code == 429 and int(full.headers["Retry-After"]) >= 1
        assert full.json()["error"]["code"] == "queue_full"
        client.delete(f"/v1/jobs/{running['id']}")


def test_job_timeout_fails_with_reason(tmp_path: Path) -> None:
    with running_server(make_settings(tmp_path, image_job_timeout_s=3.0)) as url, httpx.Client(base_url=url) as client:
        wait_ready(url)
        done = wait_job(client, _submit(client, SLOW)["id"])
        assert done["status"] == "failed" and done["error"] == "timed out after 3 s on the engine"
        # The worker goes on with the next job.
        after = wait_job(client, _submit(client, FAST)["id"])
        assert after["status"] == "succeeded", after["error"]


def test_intermediates_are_flagged_kept_and_cleaned_up(job_server: str) -> None:
    img2img = {"mode": "img2img", "steps": 20, "strength": 0.5}
    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        kept = wait_job(
            client, _submit(client, {**FAST, "seed": 9, "refiner": img2img, "keep_intermediates": True})["id"]
        )
        (result,) = kept["results"]
        (base_id,) = result["intermediate_ids"]
        assert kept["image_ids"] == [result["image_id"]]  # intermediates are not final images
        meta = client.get(f"/v1/images/{base_id}/metadata").json()
        assert meta["intermediate"] is True and meta["metadata"]["intermediate_stage"] == "base"
        # The kept picture is the finished base image: the refiner-less image of the same seed.
        plain = wait_job(client, _submit(client, {**FAST, "seed": 9, "refiner": {"mode": "none"}})["id"])
        base_px = pixels(client.get(f"/v1/images/{base_id}").content)
        assert int(abs(base_px - pixels(client.get(f"/v1/images/{plain['image_ids'][0]}").content)).max()) == 0
        assert int(abs(base_px - pixels(client.get(f"/v1/images/{result['image_id']}").content)).max()) > 2

        assert client.delete(f"/v1/jobs/{kept['id']}/intermediates").status_code == 204
        assert client.get(f"/v1/images/{base_id}").status_code == 404
        assert client.get(f"/v1/images/{result['image_id']}").status_code == 200
        after = client.get(f"/v1/jobs/{kept['id']}").json()  # the job no longer lists what is gone
        assert after["results"][0]["intermediate_ids"] == [] and after["image_ids"] == kept["image_ids"]
        assert after["results"][0]["image_id"] == result["image_id"]

        default = wait_job(client, _submit(client, {**FAST, "refiner": img2img})["id"])
        assert default["results"][0]["intermediate_ids"] == []


def test_queue_positions_are_re_announced_as_the_queue_moves(job_server: str) -> None:
    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        slow = _submit(client, SLOW)
        _wait_running(client, slow["id"], min_step=1)
        ahead = _submit(client, FAST)
        behind = _submit(client, FAST)
        events: list[tuple[str, dict[str, Any]]] = []
        follower = threading.Thread(target=_collect_events, args=(job_server, behind["id"], events))
        follower.start()
        deadline = time.monotonic() + LIMIT_S
        while not events:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        client.delete(f"/v1/jobs/{ahead['id']}")  # the job ahead leaves the queue
        client.delete(f"/v1/jobs/{slow['id']}")
        follower.join(timeout=LIMIT_S)
        assert not follower.is_alive()
        positions = [data["position"] for kind, data in events if kind == "queued"]
        assert positions[:2] == [1, 0] and events[-1][0] == "succeeded"


def test_oversized_bodies_are_413_in_the_error_shape(job_server: str) -> None:
    declared = httpx.post(f"{job_server}/v1/jobs", content=b'{"prompt":"' + b"x" * 2_000_000 + b'"}')
    assert declared.status_code == 413 and declared.json()["error"]["field"] == "body"

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        yield b'{"prompt":"'
        yield from (b"x" * 100_000 for _ in range(20))
        yield b'"}'

    streamed = httpx.post(f"{job_server}/v1/jobs", content=chunked(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "too_large"


def test_multi_stage_job_keeps_every_stage_and_streams_it(job_server: str) -> None:
    stages = [{"type": "refine", "strength": 0.4, "steps": 10}, {"type": "upscale", "factor": 2, "steps": 10}]
    body = {**FAST, "seed": 3, "stages": stages, "keep_intermediates": True}
    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        job = _submit(client, body)
        events: list[tuple[str, dict[str, Any]]] = []
        _collect_events(job_server, job["id"], events)
        done = wait_job(client, job["id"])
        assert done["status"] == "succeeded"
        (result,) = done["results"]
        base_id, refined_id = result["intermediate_ids"]
        sizes = [
            pixels(client.get(f"/v1/images/{i}").content).shape[:2] for i in (base_id, refined_id, result["image_id"])
        ]
        assert sizes == [(64, 64), (64, 64), (128, 128)]
        meta = client.get(f"/v1/images/{result['image_id']}/metadata").json()["metadata"]
        assert [s["spec"]["type"] for s in meta["recipe_stages"]] == ["refine", "upscale"]
        assert all(s["outcome"] == "ok" and s["seconds"] > 0 for s in meta["recipe_stages"])
        inter = client.get(f"/v1/images/{refined_id}/metadata").json()["metadata"]
        assert inter["intermediate_stage"] == "refine"
    kinds = [(kind, data.get("stage")) for kind, data in events]
    assert ("stage_done", "refine") in kinds and ("stage_done", "upscale") in kinds
    assert [data["stage"] for kind, data in events if kind == "image" and data.get("intermediate")] == [
        "generated",
        "refine",
    ]


def test_progressive_job_keeps_three_pass_pictures(job_server: str) -> None:
    body = {**FAST, "stages": [{"type": "progressive", "steps": 20}], "keep_intermediates": True}
    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        done = wait_job(client, _submit(client, body)["id"])
        (result,) = done["results"]
        stages = [
            client.get(f"/v1/images/{i}/metadata").json()["metadata"]["intermediate_stage"]
            for i in result["intermediate_ids"]
        ]
        assert stages == ["generated", "progressive.1", "progressive.2", "progressive.3"]


@pytest.mark.parametrize(
    ("stage", "field"),
    [
        ({"type": "upscale", "factor": 3}, "stages.0.factor"),
        ({"type": "refine", "strength": 0}, "stages.0.strength"),
        ({"type": "refine", "strength": 0.05, "steps": 10}, "stages.0.strength"),
        ({"type": "progressive", "strengths": []}, "stages.0.progressive.strengths"),
        ({"type": "adaptive", "threshold": 2}, "stages.0.adaptive.threshold"),
        ({"type": "sharpen"}, "stages.0"),
        ({"type": "inpaint"}, "stages.0.inpaint"),
        ({"type": "variations", "prompts": []}, "stages.0.variations.prompts"),
        ({"type": "inpaint", "box": [10, 10, 5, 20]}, "stages.0.inpaint"),
        ({"type": "inpaint", "mask_image_id": "0" * 32}, "stages.0.mask_image_id"),
    ],
)
def test_invalid_stage_specs_are_422_naming_the_field(job_server: str, stage: dict[str, Any], field: str) -> None:
    response = httpx.post(f"{job_server}/v1/jobs", json={**FAST, "stages": [stage]})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"].startswith(field.split(".")[0] + ".0")
    assert field.rsplit(".", 1)[-1] in response.json()["error"]["message"] or field == "stages.0"


def test_full_pipeline_recipe_by_name(job_server: str) -> None:
    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        names = {r["name"] for r in client.get("/v1/recipes").json()["data"]}
        assert {"sdxl_with_refiner", "full_pipeline", "progressive", "adaptive", "texture_wood"} <= names
        wood = client.get("/v1/recipes/texture_wood").json()
        assert wood["stages"][0]["prompt"] == "wood grain, detailed wood texture, natural pattern"
        body = {**FAST, "recipe": "full_pipeline"}
        body["stages"] = [{"type": "refine", "steps": 10}, {"type": "upscale", "steps": 10}]  # quicker, same shape
        done = wait_job(client, _submit(client, body)["id"])
        (result,) = done["results"]
        assert done["recipe"]["keep_intermediates"] is True  # from the recipe
        assert len(result["intermediate_ids"]) == 2 and [s["spec"]["type"] for s in result["recipe_stages"]] == [
            "refine",
            "upscale",
        ]


def test_saved_recipes_round_trip_and_apply(job_server: str) -> None:
    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        template = {"steps": 20, "width": 96, "height": 64, "refiner": {"mode": "none"}}
        created = client.put("/v1/recipes/small-plain", json=template)
        assert created.status_code == 201 and created.json() == template
        assert client.put("/v1/recipes/small-plain", json=template).status_code == 200
        assert client.get("/v1/recipes/small-plain").json() == template
        assert client.put("/v1/recipes/Bad Name", json=template).status_code == 422
        assert client.put("/v1/recipes/x", json={"prompt": "no"}).status_code == 422
        job = _submit(client, {"prompt": "a lake", "recipe": "small-plain", "width": 128})
        assert (job["recipe"]["width"], job["recipe"]["height"]) == (128, 64)  # the job's own width wins
        assert job["recipe"]["refiner"]["mode"] == "none"


def test_a_saved_override_of_a_built_in_is_listed_and_deleting_it_restores_the_built_in(job_server: str) -> None:
    def listed(client: httpx.Client) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in client.get("/v1/recipes").json()["data"]}

    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        built_in = client.get("/v1/recipes/progressive").json()
        assert listed(client)["progressive"] == {"name": "progressive", "built_in": True, "overridden": False}
        override = {"steps": 20, "refiner": {"mode": "none"}}
        assert client.put("/v1/recipes/progressive", json=override).status_code == 200
        assert client.get("/v1/recipes/progressive").json() == override
        assert listed(client)["progressive"] == {"name": "progressive", "built_in": True, "overridden": True}

        assert client.delete("/v1/recipes/progressive").status_code == 204
        assert client.get("/v1/recipes/progressive").json() == built_in
        assert listed(client)["progressive"]["overridden"] is False
        again = client.delete("/v1/recipes/progressive")  # a built-in itself is not deletable
        assert again.status_code == 404 and again.json()["error"]["field"] == "name"

        assert client.put("/v1/recipes/mine", json=override).status_code == 201
        assert listed(client)["mine"] == {"name": "mine", "built_in": False, "overridden": False}
        assert client.delete("/v1/recipes/mine").status_code == 204
        assert client.get("/v1/recipes/mine").status_code == 404 and "mine" not in listed(client)
        assert client.delete("/v1/recipes/mine").status_code == 404
        # Not a name a recipe can have: a bad path parameter, as on GET and PUT.
        bad = client.delete("/v1/recipes/no such name")
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "name"


def test_batch_refine_of_uploaded_pictures(job_server: str) -> None:
    import io

    from PIL import Image

    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        ids = []
        for color in ((200, 30, 30), (30, 30, 200)):
            buffer = io.BytesIO()
            Image.new("RGB", (96, 64), color).save(buffer, format="PNG")
            ids.append(
                client.post("/v1/images", files={"file": ("p.png", buffer.getvalue(), "image/png")}).json()["id"]
            )
        body = {"prompt": "a red boat", "input_image_ids": ids, "stages": [{"type": "refine", "strength": 0.5}]}
        done = wait_job(client, _submit(client, body)["id"])
        assert done["status"] == "succeeded" and [r["input_image_id"] for r in done["results"]] == ids
        for result, original in zip(done["results"], ids, strict=True):
            refined = pixels(client.get(f"/v1/images/{result['image_id']}").content)
            before = pixels(client.get(f"/v1/images/{original}").content)
            assert refined.shape == before.shape == (64, 96, 3) and int(abs(refined - before).max()) > 10


def test_inpaint_with_an_uploaded_mask(job_server: str) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    mask.save(buffer, format="PNG")
    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        mask_id = client.post("/v1/images", files={"file": ("m.png", buffer.getvalue(), "image/png")}).json()["id"]
        stage = {"type": "inpaint", "mask_image_id": mask_id, "detail": "medium", "feather": 2}
        done = wait_job(client, _submit(client, {**FAST, "stages": [stage], "keep_intermediates": True})["id"])
        (result,) = done["results"]
        assert result["recipe_stages"][0]["outcome"] == "ok"
        base = pixels(client.get(f"/v1/images/{result['intermediate_ids'][0]}").content)
        final = pixels(client.get(f"/v1/images/{result['image_id']}").content)
        diff = abs(final - base).max(axis=2)
        assert diff[20:44, 20:44].mean() > 2 and diff[:8].max() == 0 and diff[56:].max() == 0


def test_variations_are_final_images(job_server: str) -> None:
    stages = [{"type": "refine", "strength": 0.3, "steps": 10}, {"type": "variations", "prompts": ["a", "b c"]}]
    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        done = wait_job(client, _submit(client, {**FAST, "stages": stages})["id"])
        (result,) = done["results"]
        assert len(result["variation_ids"]) == 2 and done["image_ids"] == result["variation_ids"]
        assert all(client.get(f"/v1/images/{i}").status_code == 200 for i in done["image_ids"])
        early = {**FAST, "stages": list(reversed(stages))}
        refused = client.post("/v1/jobs", json=early)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "stages.0.type"


@pytest.mark.parametrize(
    ("upscaler", "field"),
    [("missing.safetensors", "stages.0.upscaler"), ("../escape.safetensors", "stages.0.upscale.upscaler")],
)
def test_upscaler_files_are_checked_before_queueing(job_server: str, upscaler: str, field: str) -> None:
    response = httpx.post(f"{job_server}/v1/jobs", json={**FAST, "stages": [{"type": "upscale", "upscaler": upscaler}]})
    assert response.status_code == 422 and response.json()["error"]["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"width": 1024, "height": 1024, "stages": [{"type": "upscale", "factor": 4}] * 2}, "stages.1.factor"),
        ({"stages": [{"type": "inpaint", "box": [70, 0, 90, 10]}]}, "stages.0.box"),
        ({"stages": [{"type": "inpaint", "box": [20, 20, 10, 30]}]}, "stages.0.inpaint.box"),
    ],
)
def test_sizes_and_boxes_are_checked_before_queueing(job_server: str, body: dict[str, Any], field: str) -> None:
    response = httpx.post(f"{job_server}/v1/jobs", json={**FAST, **body})
    assert response.status_code == 422 and response.json()["error"]["field"] == field


def test_saved_recipes_get_the_job_checks(job_server: str) -> None:
    stages = [{"type": "variations", "prompts": ["a"]}, {"type": "refine"}]
    response = httpx.put(f"{job_server}/v1/recipes/broken", json={"stages": stages})
    assert response.status_code == 422 and response.json()["error"]["field"] == "stages.0.type"


def test_a_stage_failure_reaches_results_events_and_metadata(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.models_dir.mkdir(parents=True)
    (settings.models_dir / "broken.safetensors").write_bytes(b"not a model")
    stages = [{"type": "upscale", "upscaler": "broken.safetensors"}]
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=LIMIT_S) as client:
        wait_ready(url)
        job = _submit(client, {**FAST, "stages": stages})
        events: list[tuple[str, dict[str, Any]]] = []
        _collect_events(url, job["id"], events)
        done = wait_job(client, job["id"])
        assert done["status"] == "succeeded"  # an optional stage failing does not fail the job
        (record,) = done["results"][0]["recipe_stages"]
        assert record["outcome"] == "fallback" and record["detail"]
        (event,) = [data for kind, data in events if kind == "stage_done"]
        assert event["outcome"] == "fallback" and event["detail"] == record["detail"]
        meta = client.get(f"/v1/images/{done['image_ids'][0]}/metadata").json()
        assert meta["width"] == 64 and meta["metadata"]["recipe_stages"][0]["outcome"] == "fallback"


def test_streamed_intermediates_go_once_the_next_stage_succeeds(job_server: str) -> None:
    stages = [{"type": "refine", "strength": 0.4, "steps": 10}, {"type": "upscale", "steps": 10}]
    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        job = _submit(client, {**FAST, "stages": stages, "stream_intermediates": True})
        events: list[tuple[str, dict[str, Any]]] = []
        _collect_events(job_server, job["id"], events)
        done = wait_job(client, job["id"])
    # Everything but the final image's event (which carries no "intermediate" flag).
    streamed = [(kind, data) for kind, data in events if kind != "image" or data.get("intermediate")]
    flow = [
        (kind, data.get("stage") or data.get("image_id"))
        for kind, data in streamed
        if kind in ("image", "image_deleted", "stage_done")
    ]
    announced = {data["stage"]: data["image_id"] for kind, data in streamed if kind == "image"}
    assert flow == [
        ("image", "generated"),
        ("image_deleted", announced["generated"]),  # refine succeeded: its input can go
        ("image", "refine"),
        ("stage_done", "refine"),
        ("image_deleted", announced["refine"]),  # upscale succeeded
        ("stage_done", "upscale"),
    ]
    assert done["results"][0]["intermediate_ids"] == [] and len(done["image_ids"]) == 1
    assert all(httpx.get(f"{job_server}/v1/images/{i}").status_code == 404 for i in announced.values())


def _numbered_events(client: httpx.Client, job_id: str, **headers: str) -> list[tuple[str, str, dict[str, Any]]]:
    with connect_sse(client, "GET", f"/v1/jobs/{job_id}/events", headers=headers) as source:
        return [(sse.id, sse.event, sse.json()) for sse in source.iter_sse()]


def test_a_stream_resumes_after_its_last_event_id(job_server: str) -> None:
    with httpx.Client(base_url=job_server, timeout=LIMIT_S) as client:
        job = _submit(client, FAST)
        first = _numbered_events(client, job["id"])
        assert first[-1][1] == "succeeded" and len(first) > 5
        ids = [int(seq) for seq, _, _ in first]
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # numbered in order, without gaps
        # A client that lost the stream after its fourth event gets exactly what followed.
        assert _numbered_events(client, job["id"], **{"Last-Event-ID": first[3][0]}) == first[4:]
        # A number the stream never reached: it starts again from the job's state.
        (only,) = _numbered_events(client, job["id"], **{"Last-Event-ID": str(ids[-1] + 100)})
        assert only[1] == "succeeded" and only[2] == first[-1][2]
        bad = client.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "soon"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "header.last-event-id"
