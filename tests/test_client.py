"""The Python SDK against a real server on loopback: jobs, events, downloads, errors, boards."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cofounder_agent.client import ApiError, AsyncClient, Client, JobEvent
from cofounder_agent.client_gallery import UNBOARDED
from cofounder_agent.schemas.jobs import JobCreate
from conftest import LIMIT_S, make_settings, pixels, running_server, wait_ready

FAST: dict[str, Any] = {"prompt": "a castle", "width": 64, "height": 64, "steps": 20}
# Slow enough on 2 CPU cores (~0.1 s a step) to keep the worker busy while other jobs queue.
SLOW: dict[str, Any] = {"prompt": "a slow castle", "width": 384, "height": 384, "steps": 100}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(make_settings(tmp_path_factory.mktemp("sdk"))) as url:
        wait_ready(url)
        yield url


@pytest.fixture
def client(server: str) -> Iterator[Client]:
    with Client(server, timeout=LIMIT_S) as sdk:
        yield sdk


def test_submit_wait_and_download(client: Client, tmp_path: Path) -> None:
    job = client.submit(JobCreate(**FAST, seed=7))
    assert job.status == "queued" and job.recipe["width"] == 64
    done = client.wait(job.id, timeout=LIMIT_S)
    assert done.status == "succeeded" and done.progress == 1.0 and len(done.image_ids) == 1
    (image_id,) = done.image_ids

    into_dir = client.download(image_id, tmp_path)
    assert into_dir == tmp_path / f"{image_id}.png"
    named = client.download(image_id, tmp_path / "castle.png")
    assert named.read_bytes() == into_dir.read_bytes() == client.image_bytes(image_id)
    assert pixels(into_dir).shape == (64, 64, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([into_dir.name, "castle.png"])  # no .part left

    listed = client.list(status="succeeded", limit=100)
    assert job.id in {j.id for j in listed.data} and listed.count >= 1


def test_events_report_steps_and_end_with_the_images(client: Client) -> None:
    job = client.submit(FAST)
    events = list(client.events(job.id))
    kinds = [event.type for event in events]
    assert kinds[0] in ("queued", "running") and kinds.count("step") == 20 and kinds.count("image") == 1
    assert events[-1].type == "succeeded" and events[-1].terminal
    assert not any(event.terminal for event in events[:-1])
    assert events[-1].data["image_ids"] == client.get(job.id).image_ids != []
    # A finished job's stream is just its terminal event.
    assert list(client.events(job.id)) == [JobEvent("succeeded", events[-1].data)]


def test_cancel_a_queued_job(client: Client) -> None:
    slow = client.submit(SLOW)
    fast = client.submit(FAST)
    cancelled = client.cancel(fast.id)
    assert (cancelled.status, cancelled.started_at) == ("cancelled", None)
    assert cancelled.error == "cancelled before it started"
    assert client.wait(fast.id, timeout=LIMIT_S).status == "cancelled"
    assert client.cancel(slow.id).status == "cancelled"
    with pytest.raises(ApiError) as finished:
        client.cancel(fast.id)
    assert (finished.value.status, finished.value.code) == (409, "job_finished")


def test_wait_times_out_with_a_clear_error(client: Client) -> None:
    slow = client.submit(SLOW)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=f"job {slow.id} did not finish within 1 s"):
            client.wait(slow.id, timeout=1)
        assert time.monotonic() - started < 4
    finally:
        client.cancel(slow.id)


def test_idempotency_key_returns_the_same_job(client: Client) -> None:
    first = client.submit(FAST, idempotency_key="sdk-order-1")
    again = client.submit(FAST, idempotency_key="sdk-order-1")
    other = client.submit(FAST, idempotency_key="sdk-order-2")
    assert first.id == again.id != other.id


def test_api_errors_carry_status_code_and_field(client: Client, tmp_path: Path) -> None:
    with pytest.raises(ApiError) as invalid:
        client.submit({**FAST, "width": 1001})
    assert (invalid.value.status, invalid.value.code, invalid.value.field) == (422, "invalid_request", "width")
    assert "width" in invalid.value.message

    with pytest.raises(ApiError) as missing:
        client.get("0" * 32)
    assert missing.value.status == 404
    with pytest.raises(ApiError) as no_stream:  # the streaming path reads the error body too
        list(client.events("0" * 32))
    assert no_stream.value.status == 404
    with pytest.raises(ApiError) as no_image:
        client.download("0" * 32, tmp_path)
    assert (no_image.value.status, no_image.value.code) == (404, "image_not_found")
    assert list(tmp_path.iterdir()) == []


def test_error_answers_are_read_whatever_their_shape() -> None:
    request = httpx.Request("POST", "http://server/v1/jobs")
    ours = httpx.Response(
        429,
        json={"error": {"code": "queue_full", "message": "the queue is full"}},
        headers={"Retry-After": "7"},
        request=request,
    )
    error = ApiError.from_response(ours)
    assert (error.status, error.code, error.message, error.field, error.retry_after) == (
        429,
        "queue_full",
        "the queue is full",
        None,
        7,
    )
    proxy = ApiError.from_response(httpx.Response(502, text="Bad Gateway", request=request))
    assert (proxy.status, proxy.code, proxy.message, proxy.retry_after) == (502, "http_error", "Bad Gateway", None)


def test_api_key_is_sent_as_a_bearer_token(tmp_path: Path) -> None:
    with running_server(make_settings(tmp_path, image_api_key="s3cret")) as url:
        with Client(url) as anonymous, pytest.raises(ApiError) as refused:
            anonymous.list()
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
        with Client(url, api_key="s3cret") as sdk:
            assert sdk.list().count == 0


async def test_async_client(server: str, tmp_path: Path) -> None:
    async with AsyncClient(server, timeout=LIMIT_S) as sdk:
        job = await sdk.submit(FAST)
        kinds = [event.type async for event in sdk.events(job.id)]
        assert kinds.count("step") == 20 and kinds[-1] == "succeeded"
        done = await sdk.wait(job.id, timeout=LIMIT_S)
        assert done.status == "succeeded" and done == await sdk.get(job.id)
        path = await sdk.download(done.image_ids[0], tmp_path)
        assert path.suffix == ".png" and path.read_bytes() == await sdk.image_bytes(done.image_ids[0])
        assert job.id in {j.id for j in (await sdk.list(limit=100)).data}

        slow, fast = await sdk.submit(SLOW), await sdk.submit(FAST, idempotency_key="async-1")
        assert (await sdk.submit(FAST, idempotency_key="async-1")).id == fast.id
        assert (await sdk.cancel(fast.id)).status == "cancelled"
        with pytest.raises(TimeoutError, match=r"did not finish within 0\.5 s"):
            await sdk.wait(slow.id, timeout=0.5)
        assert (await sdk.cancel(slow.id)).status == "cancelled"
        assert (await sdk.wait(slow.id, timeout=LIMIT_S)).status == "cancelled"

        with pytest.raises(ApiError) as invalid:
            await sdk.submit({**FAST, "width": 1001})
        assert (invalid.value.status, invalid.value.field) == (422, "width")
        with pytest.raises(ApiError) as no_stream:
            _ = [event async for event in sdk.events("0" * 32)]
        assert no_stream.value.status == 404


def test_boards_round_trip(client: Client, tmp_path: Path) -> None:
    board = client.create_board("castles")
    assert board.name == "castles"
    assert board.id in {b.id for b in client.list_boards().data}
    renamed = client.rename_board(board.id, "old castles")
    assert (renamed.id, renamed.name) == (board.id, "old castles")

    done = client.wait(client.submit({**FAST, "board_id": board.id}).id, timeout=LIMIT_S)
    assert done.status == "succeeded", done.error
    (image_id,) = done.image_ids
    images = client.board_images(board.id)
    assert [image.id for image in images.data] == [image_id] and images.count == 1
    assert images.data[0].board_id == board.id

    archive = client.download_board(board.id, tmp_path)
    assert archive == tmp_path / f"{board.id}.zip"
    with zipfile.ZipFile(archive) as zipped:
        contents = [zipped.read(name) for name in zipped.namelist()]
    assert contents == [client.image_bytes(image_id)]

    client.delete_board(board.id)
    assert board.id not in {b.id for b in client.list_boards().data}
    assert client.image_bytes(image_id)  # kept: delete_images defaults to False
    with pytest.raises(ApiError) as gone:
        client.board_images(board.id)
    assert gone.value.status == 404


def test_deleting_a_board_can_delete_its_images(client: Client) -> None:
    board = client.create_board("scratch")
    done = client.wait(client.submit({**FAST, "board_id": board.id}).id, timeout=LIMIT_S)
    client.delete_board(board.id, delete_images=True)
    with pytest.raises(ApiError) as gone:
        client.image_bytes(done.image_ids[0])
    assert gone.value.status == 404


async def test_async_boards(server: str) -> None:
    async with AsyncClient(server) as sdk:
        board = await sdk.create_board("async")
        assert (await sdk.rename_board(board.id, "renamed")).name == "renamed"
        assert board.id in {b.id for b in (await sdk.list_boards()).data}
        assert (await sdk.board_images(board.id)).count == 0
        await sdk.delete_board(board.id)
        assert board.id not in {b.id for b in (await sdk.list_boards()).data}


def test_images_are_listed_and_moved(client: Client) -> None:
    board = client.create_board("moves")
    done = client.wait(client.submit({**FAST, "board_id": board.id}).id, timeout=LIMIT_S)
    (image_id,) = done.image_ids
    listed = client.list_images(board.id, intermediate=False)
    assert [image.id for image in listed.data] == [image_id] and listed.count == 1

    moved = client.move_image(image_id, None)
    assert (moved.id, moved.board_id) == (image_id, None)
    assert client.list_images(board.id).count == 0
    assert client.list_images(UNBOARDED, order="newest", limit=1).data[0].id == image_id
    assert image_id in {image.id for image in client.list_images(limit=200).data}
    assert client.move_image(image_id, board.id).board_id == board.id

    with pytest.raises(ApiError) as refused:
        client.move_image(image_id, "0" * 32)
    assert (refused.value.status, refused.value.field) == (422, "board_id")
    with pytest.raises(ApiError) as unknown:
        client.list_images("0" * 32)
    assert (unknown.value.status, unknown.value.code) == (404, "board_not_found")


async def test_async_images_are_listed_and_moved(server: str) -> None:
    async with AsyncClient(server) as sdk:
        board = await sdk.create_board("async moves")
        other = await sdk.create_board("async target")
        done = await sdk.wait((await sdk.submit({**FAST, "board_id": board.id})).id, timeout=LIMIT_S)
        (image_id,) = done.image_ids
        assert [i.id for i in (await sdk.list_images(board.id, order="newest")).data] == [image_id]
        assert (await sdk.move_image(image_id, other.id)).board_id == other.id
        assert (await sdk.list_images(board.id)).count == 0
        assert [i.id for i in (await sdk.list_images(other.id, intermediate=False)).data] == [image_id]
        with pytest.raises(ApiError) as gone:
            await sdk.move_image("0" * 32, None)
        assert (gone.value.status, gone.value.code) == (404, "image_not_found")
