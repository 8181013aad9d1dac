"""The rest of the OpenAI Images API, through the real ``openai`` client: edits, variations, models, errors."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from fastapi import FastAPI
from PIL import Image

from cofounder_agent.contract.errors import QueueFull
from cofounder_agent.errors import install_error_handlers
from cofounder_agent.openai_errors import OpenAIErrorShape
from conftest import LIMIT_S, make_settings, pixels, running_server

KEY = "sk-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SIDE = 256
BOX = (96, 96, 160, 160)  # the region to edit: left, top, right, bottom
FEATHER = 8  # the edits' feather (services/openai_images.py); a Gaussian reaches about 3 radii out


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openai")


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[str]:
    # A budget of 20 megapixel-steps: an edit of 1024x1024 (27 steps) or of 3 x 512x512 is over it.
    settings = make_settings(home, image_api_key=KEY, image_max_upload_mb=0.5, image_max_job_cost=20)
    with running_server(settings) as url:
        deadline = time.monotonic() + LIMIT_S
        while httpx.get(f"{url}/readyz", headers=AUTH).status_code != 200:  # behind the key too
            if time.monotonic() > deadline:
                raise TimeoutError("models did not load")
            time.sleep(0.1)
        yield url


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, timeout=LIMIT_S, max_retries=0)


def _picture(size: tuple[int, int] = (SIDE, SIDE), mode: str = "RGB") -> Image.Image:
    """A picture with structure (gradients), so that an edit's change is visible."""
    width, height = size
    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    rgb = np.stack([x, y, 255 - x], axis=2).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    return image.convert(mode) if mode != "RGB" else image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _with_hole(image: Image.Image, box: tuple[int, int, int, int] = BOX) -> Image.Image:
    """The picture with a fully transparent box: OpenAI's mark of the region to edit."""
    holed = image.convert("RGBA")
    holed.paste((0, 0, 0, 0), box)
    return holed


def _decoded(item: Any) -> Image.Image:
    data = base64.b64decode(item.b64_json or "")
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        image.load()
        return image.copy()


def _fetched(url: str) -> np.ndarray[Any, Any]:
    response = httpx.get(url, headers=AUTH)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return pixels(response.content)


def _outside(box: tuple[int, int, int, int], border: int) -> np.ndarray[Any, Any]:
    keep = np.ones((SIDE, SIDE), dtype=bool)
    left, top, right, bottom = box
    keep[max(0, top - border) : bottom + border, max(0, left - border) : right + border] = False
    return keep


def test_an_edit_with_a_mask_repaints_only_the_transparent_region(client: openai.OpenAI) -> None:
    picture = _picture()
    result = client.images.edit(
        image=("picture.png", _png(picture), "image/png"),
        mask=("mask.png", _png(_with_hole(_picture())), "image/png"),
        prompt="a red boat",
        size="256x256",
        response_format="b64_json",
    )
    (item,) = result.data or []
    edited = _decoded(item)
    assert edited.size == (SIDE, SIDE)
    diff = np.abs(np.asarray(edited.convert("RGB"), dtype=np.int16) - np.asarray(picture, dtype=np.int16)).max(axis=2)
    left, top, right, bottom = BOX
    assert diff[top + 8 : bottom - 8, left + 8 : right - 8].mean() > 5  # inside: repainted
    assert diff[_outside(BOX, 3 * FEATHER)].max() == 0  # beyond the feathered border: every pixel kept


def test_an_edit_without_a_mask_uses_the_image_alpha_and_makes_n_pictures(client: openai.OpenAI) -> None:
    holed = _with_hole(_picture())
    result = client.images.edit(
        image=("holed.png", _png(holed), "image/png"), prompt="a stone bridge", n=2, response_format="url"
    )
    first, second = (_fetched(item.url or "") for item in result.data or [])
    assert first.shape == second.shape == (SIDE, SIDE, 3)  # size omitted: the image's own
    left, top, right, bottom = BOX
    inside = (slice(top + 8, bottom - 8), slice(left + 8, right - 8))
    assert np.abs(first[inside] - second[inside]).max() > 2  # image i runs with seed + i
    keep = _outside(BOX, 3 * FEATHER)
    assert np.abs(first - second).max(axis=2)[keep].max() == 0


def test_an_edit_sent_as_an_image_list_edits_the_first(server: str) -> None:
    # open-webui and the SDK send a list as parts named image[] (RESEARCH.md, section 5).
    files = [
        ("image[]", ("a.png", _png(_with_hole(_picture())), "image/png")),
        ("image[]", ("b.png", b"x", "image/png")),
    ]
    form = {"prompt": "a kite", "size": "64x64", "response_format": "b64_json", "model": "dall-e-2", "quality": "hd"}
    response = httpx.post(f"{server}/v1/images/edits", data=form, files=files, headers=AUTH, timeout=LIMIT_S)
    assert response.status_code == 200, response.text
    (item,) = response.json()["data"]
    with Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))) as image:
        assert image.size == (64, 64)


def test_variations_have_the_asked_size_and_differ(client: openai.OpenAI) -> None:
    wide = _png(_picture((300, 200)))  # not square: cropped around its centre
    result = client.images.create_variation(
        image=("wide.png", wide, "image/png"), n=2, size="256x256", response_format="b64_json"
    )
    first, second = (_decoded(item) for item in result.data or [])
    assert first.size == second.size == (SIDE, SIDE)
    assert np.abs(np.asarray(first, dtype=np.int16) - np.asarray(second, dtype=np.int16)).max() > 2
    by_url = client.images.create_variation(image=("p.png", _png(_picture()), "image/png"), size="256x256")
    assert _fetched(by_url.data[0].url or "").shape == (SIDE, SIDE, 3)  # type: ignore[index]


def _refused(error: openai.APIStatusError, param: str) -> None:
    assert isinstance(error.body, dict) and error.body["param"] == param
    assert error.body["type"] == "invalid_request_error" and error.body["message"].startswith(param)


def test_invalid_sizes_are_bad_requests_naming_size(client: openai.OpenAI) -> None:
    image = ("p.png", _png(_picture()), "image/png")
    with pytest.raises(openai.BadRequestError) as variation:
        client.images.create_variation(image=image, size="300x300")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as edit:
        client.images.edit(image=image, mask=image, prompt="x", size="1001x1001")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as generation:
        client.images.generate(prompt="x", size="1001x1001")  # type: ignore[arg-type]
    for raised in (variation, edit, generation):
        assert raised.value.status_code == 400 and raised.value.param == "size"
        _refused(raised.value, "size")


def test_masks_that_cannot_mark_a_region_are_bad_requests_naming_mask(client: openai.OpenAI) -> None:
    opaque = ("p.png", _png(_picture()), "image/png")
    cases = [
        {"image": opaque},  # no mask, and no alpha in the image
        {"image": opaque, "mask": ("m.png", _png(_with_hole(_picture((128, 128)), (8, 8, 32, 32))), "image/png")},
        {"image": opaque, "mask": ("m.png", _png(_picture(mode="RGBA")), "image/png")},  # nothing transparent
    ]
    for files in cases:
        with pytest.raises(openai.BadRequestError) as raised:
            client.images.edit(prompt="x", **files)  # type: ignore[arg-type]
        _refused(raised.value, "mask")


def test_other_invalid_fields_are_bad_requests_naming_them(client: openai.OpenAI) -> None:
    image = ("p.png", _png(_with_hole(_picture())), "image/png")
    with pytest.raises(openai.BadRequestError) as too_many:
        client.images.edit(image=image, prompt="x", n=9)
    _refused(too_many.value, "n")
    with pytest.raises(openai.BadRequestError) as not_a_picture:
        client.images.create_variation(image=("p.png", b"not a picture", "image/png"))
    _refused(not_a_picture.value, "image")
    with pytest.raises(openai.BadRequestError) as no_prompt:
        client.images.edit(image=image, prompt="")
    _refused(no_prompt.value, "prompt")
    with pytest.raises(openai.BadRequestError) as generations_n:
        client.images.generate(prompt="x", n=9)
    _refused(generations_n.value, "n")


def test_an_edit_over_the_budget_names_size_or_n_and_keeps_no_picture(client: openai.OpenAI, home: Path) -> None:
    stored = {p.name for p in (home / "data").iterdir()}
    image = ("p.png", _png(_with_hole(_picture())), "image/png")
    for size, n, param in (("1024x1024", 1, "size"), ("512x512", 3, "n")):
        with pytest.raises(openai.BadRequestError) as raised:
            client.images.edit(image=image, prompt="x", size=size, n=n)  # type: ignore[arg-type]
        _refused(raised.value, param)
    assert {p.name for p in (home / "data").iterdir()} == stored  # the picture and mask went again


def test_a_too_large_upload_is_a_413_in_openai_shape(client: openai.OpenAI, server: str) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    big = _png(Image.fromarray(noise, "RGB"))
    assert len(big) > 0.5 * 1024 * 1024
    with pytest.raises(openai.APIStatusError) as raised:
        client.images.create_variation(image=("big.png", big, "image/png"), size="256x256")
    assert raised.value.status_code == 413 and raised.value.body["param"] == "image"  # type: ignore[index]
    # Without a Content-Length (streamed), the router's own limit answers, reshaped too.
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "multipart/form-data; boundary=xyz"}
    part = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n\r\n'
    body = part + big + b"\r\n--xyz--\r\n"
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    streamed = httpx.post(f"{server}/v1/images/variations", content=chunks, headers=headers, timeout=LIMIT_S)
    assert streamed.status_code == 413 and streamed.json()["error"]["type"] == "invalid_request_error"


def test_models_lists_the_loaded_model_and_errors_keep_their_shapes(client: openai.OpenAI, server: str) -> None:
    (model,) = client.models.list().data
    assert (model.id, model.object, model.owned_by) == ("tiny", "model", "cofounder-agent")  # the built-in model
    wrong = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        wrong.models.list()
    assert raised.value.body["type"] == "authentication_error"  # type: ignore[index]
    # The service's own routes keep the service's own error shape.
    own = httpx.post(f"{server}/v1/jobs", json={"prompt": "x", "n": 1}, headers=AUTH)
    assert own.status_code == 422 and own.json()["error"]["field"] == "n"


# The edge alone, in process: statuses no running server produces on demand.


def _edge_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(OpenAIErrorShape)

    @app.get("/v1/models")
    async def broken() -> None:
        raise RuntimeError("a bug")

    @app.post("/v1/images/generations")
    async def full() -> None:
        raise QueueFull("the queue is full", retry_after=7)

    @app.post("/v1/jobs")
    async def own() -> None:
        raise QueueFull("the queue is full", retry_after=7)

    return app


async def test_429_and_500_come_in_openai_shape_on_openai_paths_only() -> None:
    transport = httpx.ASGITransport(app=_edge_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as edge:
        full = await edge.post("/v1/images/generations")
        assert (full.status_code, full.headers["retry-after"]) == (429, "7")
        assert full.json()["error"] == {
            "message": "the queue is full",
            "type": "rate_limit_error",
            "param": None,
            "code": "queue_full",
        }
        broken = await edge.get("/v1/models")
        assert broken.status_code == 500 and broken.json()["error"]["type"] == "server_error"
        own = await edge.post("/v1/jobs")
        assert own.status_code == 429 and own.json() == {
            "error": {"code": "queue_full", "message": "the queue is full"}
        }
