"""Boards and images over HTTP: upload, list, thumbnails, metadata, zip download, deletion."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from conftest import LIMIT_S, make_settings, pixels, running_server, wait_ready


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("boards")


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[str]:
    with running_server(make_settings(data_dir, image_max_upload_mb=1)) as url:
        wait_ready(url)
        yield url


def _png(size: tuple[int, int] = (300, 200), color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _job_image(client: httpx.Client, board_id: str) -> str:
    job = client.post(
        "/v1/jobs", json={"prompt": "a boat", "width": 64, "height": 64, "steps": 20, "board_id": board_id}
    )
    job_id = job.json()["id"]
    deadline = time.monotonic() + LIMIT_S
    while (state := client.get(f"/v1/jobs/{job_id}").json())["status"] != "succeeded":
        assert state["status"] in ("queued", "running") and time.monotonic() < deadline, state
        time.sleep(0.05)
    image_id: str = state["image_ids"][0]
    return image_id


def test_board_lifecycle_with_generated_and_uploaded_images(server: str) -> None:
    with httpx.Client(base_url=server, timeout=LIMIT_S) as client:
        board = client.post("/v1/boards", json={"name": "  Harbour  "})
        assert board.status_code == 201 and board.json()["name"] == "Harbour"
        board_id = board.json()["id"]
        generated = _job_image(client, board_id)
        uploaded = client.post(
            "/v1/images", files={"file": ("photo.png", _png(), "image/png")}, data={"board_id": board_id}
        )
        assert uploaded.status_code == 201, uploaded.text
        assert (uploaded.json()["width"], uploaded.json()["source"]) == (300, "upload")

        listed = client.get(f"/v1/boards/{board_id}/images", params={"limit": 1}).json()
        assert listed["count"] == 2 and [i["id"] for i in listed["data"]] == [generated]
        page2 = client.get(f"/v1/boards/{board_id}/images", params={"limit": 1, "offset": 1}).json()
        assert [i["id"] for i in page2["data"]] == [uploaded.json()["id"]]

        renamed = client.patch(f"/v1/boards/{board_id}", json={"name": "Port"}).json()
        assert renamed["name"] == "Port"
        assert any(b["name"] == "Port" for b in client.get("/v1/boards").json()["data"])

        archive = client.get(f"/v1/boards/{board_id}/download")
        assert archive.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
            assert sorted(zipped.namelist()) == sorted([f"{generated}.png", f"{uploaded.json()['id']}.png"])

        assert client.delete(f"/v1/boards/{board_id}", params={"delete_images": "true"}).status_code == 204
        assert client.get(f"/v1/images/{generated}").status_code == 404
        assert client.get(f"/v1/boards/{board_id}/images").status_code == 404


def test_deleting_a_board_keeps_its_images_by_default(server: str) -> None:
    with httpx.Client(base_url=server, timeout=LIMIT_S) as client:
        board_id = client.post("/v1/boards", json={"name": "keep"}).json()["id"]
        image_id = _job_image(client, board_id)
        assert client.delete(f"/v1/boards/{board_id}").status_code == 204
        assert client.get(f"/v1/images/{image_id}").status_code == 200
        assert client.get(f"/v1/images/{image_id}/metadata").json()["board_id"] is None


def test_thumbnail_and_metadata(server: str) -> None:
    with httpx.Client(base_url=server, timeout=LIMIT_S) as client:
        image_id = client.post("/v1/images", files={"file": ("a.png", _png((1000, 500)), "image/png")}).json()["id"]
        thumb = client.get(f"/v1/images/{image_id}", params={"variant": "thumbnail"})
        assert thumb.headers["content-type"] == "image/png" and pixels(thumb.content).shape == (128, 256, 3)
        meta = client.get(f"/v1/images/{image_id}/metadata").json()
        assert meta["metadata"]["source"] == "upload" and meta["width"] == 1000
        assert meta["thumbnail_url"].endswith(f"/v1/images/{image_id}?variant=thumbnail")
        assert client.delete(f"/v1/images/{image_id}").status_code == 204
        assert client.delete(f"/v1/images/{image_id}").status_code == 404
        assert client.get(f"/v1/images/{image_id}/metadata").status_code == 404


@pytest.mark.parametrize(
    ("content", "status", "field"),
    [
        (b"GIF89a not really", 422, "file"),
        (_png()[:200], 422, "file"),  # truncated PNG: fails the full decode
        (b"\x89PNG" + b"0" * (2 * 1024 * 1024), 413, "file"),  # over the 1 MB test limit
    ],
)
def test_bad_uploads_are_refused(server: str, content: bytes, status: int, field: str) -> None:
    response = httpx.post(f"{server}/v1/images", files={"file": ("x.png", content, "image/png")})
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field


def test_unknown_ids_and_bad_names(server: str) -> None:
    unknown = "0" * 32
    checks: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/v1/boards/{unknown}/images", {}),
        ("PATCH", f"/v1/boards/{unknown}", {"json": {"name": "x"}}),
        ("DELETE", f"/v1/boards/{unknown}", {}),
        ("GET", f"/v1/boards/{unknown}/download", {}),
        ("DELETE", f"/v1/images/{unknown}", {}),
    ]
    for method, path, kwargs in checks:
        assert httpx.request(method, server + path, **kwargs).status_code == 404, path
    empty = httpx.post(f"{server}/v1/boards", json={"name": "   "})
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "name"
    into_unknown = httpx.post(
        f"{server}/v1/images", files={"file": ("a.png", _png(), "image/png")}, data={"board_id": unknown}
    )
    assert into_unknown.status_code == 422 and into_unknown.json()["error"]["field"] == "board_id"


def test_huge_pagination_offsets_are_422_not_500(server: str) -> None:
    board_id = httpx.post(f"{server}/v1/boards", json={"name": "paged"}).json()["id"]
    for path in (f"/v1/boards/{board_id}/images", "/v1/jobs"):
        response = httpx.get(server + path, params={"offset": 83398654078315768315904})
        assert response.status_code == 422 and response.json()["error"]["field"] == "offset"


def test_a_row_whose_file_this_server_cannot_see_says_so(server: str, data_dir: Path) -> None:
    # What an API replica answers when a worker wrote to another image directory.
    with httpx.Client(base_url=server, timeout=LIMIT_S) as client:
        image_id = client.post("/v1/images", files={"file": ("a.png", _png(), "image/png")}).json()["id"]
        (file,) = [path for path in data_dir.rglob(f"{image_id}.*") if path.suffix == ".png"]
        file.unlink()
        for path in (f"/v1/images/{image_id}", f"/v1/images/{image_id}/metadata"):
            missing = client.get(path)
            assert missing.status_code == 404, path
            assert missing.json()["error"]["code"] == "image_file_missing"
            assert "IMAGE_DATA_DIR" in missing.json()["error"]["message"]
        assert client.get("/v1/images/" + "0" * 32).json()["error"]["code"] == "image_not_found"


def _upload(client: httpx.Client, board_id: str | None = None) -> str:
    data = {"board_id": board_id} if board_id else {}
    response = client.post("/v1/images", files={"file": ("a.png", _png((32, 32)), "image/png")}, data=data)
    assert response.status_code == 201, response.text
    image_id: str = response.json()["id"]
    return image_id


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [image["id"] for image in response.json()["data"]]


def test_images_are_listed_by_board_in_no_board_or_all(server: str) -> None:
    with httpx.Client(base_url=server, timeout=LIMIT_S) as client:
        board_id = client.post("/v1/boards", json={"name": "listed"}).json()["id"]
        boarded = [_upload(client, board_id) for _ in range(3)]
        loose = [_upload(client) for _ in range(2)]
        mine = boarded + loose

        in_board = client.get("/v1/images", params={"board_id": board_id})
        assert _ids(in_board) == boarded and in_board.json()["count"] == 3
        assert in_board.json()["data"][0]["board_id"] == board_id
        newest = client.get("/v1/images", params={"board_id": board_id, "order": "newest"})
        assert _ids(newest) == boarded[::-1]
        # Other tests of this module leave images too: these are the newest of each listing.
        unboarded = client.get("/v1/images", params={"board_id": "none", "order": "newest", "limit": 2})
        assert _ids(unboarded) == loose[::-1] and unboarded.json()["count"] >= 2
        everything = client.get("/v1/images", params={"order": "newest", "limit": 5})
        assert _ids(everything) == mine[::-1] and everything.json()["count"] >= 5
        assert set(mine) <= set(_ids(client.get("/v1/images", params={"limit": 200})))

        page = {"board_id": board_id, "limit": 1}
        pages = [_ids(client.get("/v1/images", params={**page, "offset": n})) for n in range(4)]
        assert pages == [[boarded[0]], [boarded[1]], [boarded[2]], []]
        finals = client.get("/v1/images", params={"board_id": board_id, "intermediate": "false"})
        assert _ids(finals) == boarded
        assert _ids(client.get("/v1/images", params={"board_id": board_id, "intermediate": "true"})) == []
        by_board = client.get(f"/v1/boards/{board_id}/images", params={"order": "newest"})
        assert _ids(by_board) == boarded[::-1]
        assert _ids(client.get(f"/v1/boards/{board_id}/images")) == boarded  # oldest first by default


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"board_id": "0" * 32}, 404),
        ({"board_id": "None"}, 422),
        ({"board_id": "0" * 31}, 422),
        ({"order": "random"}, 422),
        ({"limit": 201}, 422),
    ],
)
def test_bad_image_listings_are_refused(server: str, params: dict[str, Any], status: int) -> None:
    response = httpx.get(f"{server}/v1/images", params=params)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == next(iter(params))


def test_an_image_moves_between_boards_and_out_of_them(server: str) -> None:
    with httpx.Client(base_url=server, timeout=LIMIT_S) as client:
        first, second = (client.post("/v1/boards", json={"name": n}).json()["id"] for n in ("first", "second"))
        image_id = _upload(client, first)

        moved = client.patch(f"/v1/images/{image_id}", json={"board_id": second})
        assert moved.status_code == 200, moved.text
        assert (moved.json()["id"], moved.json()["board_id"]) == (image_id, second)
        assert moved.json()["url"].endswith(f"/v1/images/{image_id}")
        assert _ids(client.get(f"/v1/boards/{first}/images")) == []
        assert _ids(client.get(f"/v1/boards/{second}/images")) == [image_id]

        out = client.patch(f"/v1/images/{image_id}", json={"board_id": None})
        assert out.status_code == 200 and out.json()["board_id"] is None
        assert _ids(client.get(f"/v1/boards/{second}/images")) == []
        assert image_id in _ids(client.get("/v1/images", params={"board_id": "none", "order": "newest"}))

        back = client.patch(f"/v1/images/{image_id}", json={"board_id": first})
        assert back.json()["board_id"] == first
        assert client.get(f"/v1/images/{image_id}/metadata").json()["board_id"] == first


def test_a_refused_move_changes_nothing(server: str) -> None:
    unknown = "0" * 32
    with httpx.Client(base_url=server, timeout=LIMIT_S) as client:
        board_id = client.post("/v1/boards", json={"name": "stay"}).json()["id"]
        image_id = _upload(client, board_id)
        refused = client.patch(f"/v1/images/{image_id}", json={"board_id": unknown})
        assert refused.status_code == 422, refused.text
        assert (refused.json()["error"]["field"], refused.json()["error"]["message"]) == (
            "board_id",
            "board_id: no board with this id",
        )
        assert client.get(f"/v1/images/{image_id}/metadata").json()["board_id"] == board_id
        for body in ({}, {"board_id": "x"}, {"board_id": board_id, "name": "extra"}):
            assert client.patch(f"/v1/images/{image_id}", json=body).status_code == 422, body
        gone = client.patch(f"/v1/images/{unknown}", json={"board_id": board_id})
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "image_not_found"
        assert _ids(client.get(f"/v1/boards/{board_id}/images")) == [image_id]
