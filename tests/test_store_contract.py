"""The API contract of stored rows over HTTP: UTC timestamps, only stored files served, one status per unknown board."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from conftest import make_settings, running_server, wait_ready


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    settings = make_settings(tmp_path_factory.mktemp("contract"))
    with running_server(settings) as url:
        wait_ready(url)
        yield url, settings.image_data_dir


def _png(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def _upload(client: httpx.Client, board_id: str | None = None) -> httpx.Response:
    data = {"board_id": board_id} if board_id else {}
    return client.post("/v1/images", files={"file": ("a.png", _png(), "image/png")}, data=data)


def _timestamps(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every ``*_at`` text field, anywhere in a JSON document (``switch_at`` is a number, not a time)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key.endswith("_at") and isinstance(item, str):
                yield f"{path}.{key}", item
            yield from _timestamps(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _timestamps(item, f"{path}[{index}]")


def test_every_timestamp_in_every_response_is_utc(served: tuple[str, Path]) -> None:
    url, _ = served
    with httpx.Client(base_url=url, timeout=120) as client:
        board_id = client.post("/v1/boards", json={"name": "zones"}).json()["id"]
        image_id = _upload(client, board_id).json()["id"]
        job = client.post("/v1/jobs", json={"prompt": "a clock", "width": 64, "height": 64, "steps": 10})
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        deadline = time.monotonic() + 120
        while client.get(f"/v1/jobs/{job_id}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        responses = [
            client.get("/v1/boards"),
            client.get(f"/v1/boards/{board_id}/images"),
            client.get(f"/v1/images/{image_id}/metadata"),
            client.get(f"/v1/jobs/{job_id}"),
            client.get("/v1/jobs"),
        ]
    found = {}
    for response in responses:
        assert response.status_code == 200, response.text
        found.update(_timestamps(response.json(), str(response.url.path)))
    fields = {path.rsplit(".", 1)[1] for path in found}
    assert {"created_at", "started_at", "finished_at"} <= fields
    naive = {path: value for path, value in found.items() if not value.endswith(("Z", "+00:00"))}
    assert not naive


def _plant(images: Path, name: str, content: bytes) -> None:
    (images / name).write_bytes(content)


def _statuses(client: httpx.Client, image_id: str) -> list[int]:
    paths = [f"/v1/images/{image_id}", f"/v1/images/{image_id}?variant=thumbnail", f"/v1/images/{image_id}/metadata"]
    return [client.get(path).status_code for path in paths]


def test_only_files_the_store_wrote_are_served(served: tuple[str, Path]) -> None:
    url, data_dir = served
    images = data_dir / "images"
    garbage = b"this is not an image at all" * 10
    planted = {
        "valid png with a sidecar": (_png(), b'{"width": 64, "height": 48}'),
        "valid png, no sidecar": (_png(), None),
        "garbage, garbage sidecar": (garbage, b"{not json"),
        "garbage, no sidecar": (garbage, None),
        "only a garbage sidecar": (None, b"\xff\xfe garbage"),
        "only a sidecar that is a list": (None, b"[1, 2]"),
    }
    with httpx.Client(base_url=url, timeout=60) as client:
        for label, (picture, sidecar) in planted.items():
            image_id = uuid.uuid4().hex
            if picture is not None:
                _plant(images, f"{image_id}.png", picture)
            if sidecar is not None:
                _plant(images, f"{image_id}.json", sidecar)
            assert _statuses(client, image_id) == [404, 404, 404], label

        # Files the store wrote, later overwritten by other means: a clean 404, never a 500.
        overwritten = _upload(client).json()["id"]
        _plant(images, f"{overwritten}.png", garbage)
        assert _statuses(client, overwritten) == [404, 404, 404]

        truncated = _upload(client).json()["id"]
        _plant(images, f"{truncated}.png", _png()[:60])
        assert client.get(f"/v1/images/{truncated}?variant=thumbnail").status_code == 404

        bad_thumb = _upload(client).json()["id"]
        _plant(images, f"{bad_thumb}.thumb.png", garbage)
        thumb = client.get(f"/v1/images/{bad_thumb}?variant=thumbnail")
        assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).size == (64, 48)

        bad_sidecar = _upload(client).json()["id"]
        _plant(images, f"{bad_sidecar}.json", b"{not json")
        meta = client.get(f"/v1/images/{bad_sidecar}/metadata")
        assert meta.status_code == 200 and meta.json()["metadata"] == {}
        assert client.get(f"/v1/images/{bad_sidecar}").content == _png()


def test_an_unknown_board_gives_the_same_status_on_every_route(served: tuple[str, Path]) -> None:
    url, _ = served
    unknown = "0" * 32
    with httpx.Client(base_url=url, timeout=60) as client:
        image_id = _upload(client).json()["id"]
        in_path = [
            client.get(f"/v1/boards/{unknown}/images"),
            client.get("/v1/images", params={"board_id": unknown}),  # a query field, answered as the path
            client.patch(f"/v1/boards/{unknown}", json={"name": "x"}),
            client.delete(f"/v1/boards/{unknown}"),
            client.get(f"/v1/boards/{unknown}/download"),
        ]
        in_body = [
            client.post("/v1/jobs", json={"prompt": "x", "width": 64, "height": 64, "board_id": unknown}),
            _upload(client, unknown),
            client.patch(f"/v1/images/{image_id}", json={"board_id": unknown}),
        ]
    for response in in_path:
        assert (response.status_code, response.json()["error"]["field"]) == (404, "board_id"), response.url
    for response in in_body:
        assert (response.status_code, response.json()["error"]["field"]) == (422, "board_id"), response.url


def test_uploads_into_a_board_being_deleted_never_point_at_it(served: tuple[str, Path]) -> None:
    url, data_dir = served
    with httpx.Client(base_url=url, timeout=60) as client:
        board_id = client.post("/v1/boards", json={"name": "doomed"}).json()["id"]

        def upload(_: int) -> int:
            with httpx.Client(base_url=url, timeout=60) as own:
                return _upload(own, board_id).status_code

        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(upload, n) for n in range(64)]
            while sum(f.done() for f in futures) < 8:  # some land in the board first
                time.sleep(0.01)
            assert client.delete(f"/v1/boards/{board_id}").status_code == 204
            statuses = [f.result() for f in futures]
    with sqlite3.connect(data_dir / "jobs.sqlite3") as db:
        dangling = db.execute(
            "SELECT count(*) FROM images WHERE board_id IS NOT NULL AND board_id NOT IN (SELECT id FROM boards)"
        ).fetchone()[0]
    assert dangling == 0
    assert set(statuses) <= {201, 422} and 201 in statuses  # 422: the board was gone when it was checked


def test_a_restart_removes_what_a_crash_left(tmp_path: Path) -> None:
    from cofounder_agent.jobs.store import Store, sqlite_url
    from cofounder_agent.jobs.tables import ImageRow
    from cofounder_agent.storage import ImageStore

    settings = make_settings(tmp_path)
    files = ImageStore(settings.image_data_dir)

    async def crashed_state() -> tuple[str, str, str]:
        db = Store(sqlite_url(settings.image_data_dir))
        await db.init()
        job, _ = await db.add_job({"prompt": "x"})
        await db.claim_next()
        await db.recover()  # a first crash
        await db.claim_next()  # running when the second crash came: it fails, and nothing runs
        written = files.save_png(Image.new("RGB", (8, 8)), {"job_id": job.id}).id
        row = ImageRow(id=written, job_id=job.id, media_type="image/png", width=8, height=8, source="tiny")
        await db.add_image(row)
        unrowed = files.save_png(Image.new("RGB", (8, 8)), {}).id  # the crash came before its row
        await db.close()
        return job.id, written, unrowed

    job_id, written, unrowed = asyncio.run(crashed_state())
    with running_server(settings) as url:
        for image_id in (written, unrowed):
            assert httpx.get(f"{url}/v1/images/{image_id}").status_code == 404
        assert files.ids() == set()
        job = httpx.get(f"{url}/v1/jobs/{job_id}").json()
        assert (job["status"], job["image_ids"]) == ("failed", [])


def test_a_job_cut_short_leaves_no_image_its_results_do_not_name(served: tuple[str, Path]) -> None:
    url, data_dir = served
    # The generated picture is kept as an intermediate, then a long refine stage is cancelled:
    # the intermediate belongs to a result that never finished, so nothing may name it.
    body = {
        "prompt": "cut short",
        "width": 64,
        "height": 64,
        "steps": 4,
        "keep_intermediates": True,
        "stages": [{"type": "refine", "strength": 1.0, "steps": 200}],
    }
    with httpx.Client(base_url=url, timeout=60) as client:
        job = client.post("/v1/jobs", json=body).json()
        deadline = time.monotonic() + 600
        while (seen := client.get(f"/v1/jobs/{job['id']}").json())["stage"] != "refine":
            assert seen["status"] in ("queued", "running") and time.monotonic() < deadline, seen
            time.sleep(0.02)
        with sqlite3.connect(data_dir / "jobs.sqlite3") as db:
            assert db.execute("SELECT count(*) FROM images WHERE job_id = ?", (job["id"],)).fetchone()[0] == 1
        done = client.delete(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "cancelled" and done["image_ids"] == [] and done["results"] == []
    with sqlite3.connect(data_dir / "jobs.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM images WHERE job_id = ?", (job["id"],)).fetchone()[0] == 0
