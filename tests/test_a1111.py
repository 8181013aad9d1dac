"""AUTOMATIC1111's txt2img, img2img and png-info, spoken by the real ``webuiapi`` client and by
request bodies as open-webui and SillyTavern send them, against a running server (tiny model)."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import webuiapi
from PIL import Image

from cofounder_agent.contract.infotext import infotext, parse
from conftest import LIMIT_S, make_settings, running_server, wait_ready

CLIENTS = Path(__file__).with_name("data") / "clients"
TXT2IMG = "/sdapi/v1/txt2img"
SMALL = {"width": 64, "height": 64, "steps": 4}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(make_settings(tmp_path_factory.mktemp("a1111"))) as url:
        wait_ready(url)
        yield url


def _api(url: str) -> webuiapi.WebUIApi:
    host, port = url.removeprefix("http://").split(":")
    return webuiapi.WebUIApi(host=host, port=int(port))


def _png(picture: Image.Image) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _post(url: str, body: dict[str, Any], path: str = TXT2IMG, **kwargs: Any) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=LIMIT_S, **kwargs)


def test_webuiapi_txt2img_gives_pictures_of_the_asked_size_and_their_seeds(server: str) -> None:
    result = _api(server).txt2img(prompt="a lighthouse", seed=7, batch_size=2, cfg_scale=6, **SMALL)
    assert [image.size for image in result.images] == [(64, 64), (64, 64)]
    info = result.info  # webuiapi parsed the JSON string
    assert info["all_seeds"] == [7, 8] and info["seed"] == 7 and info["sampler_name"] == "Euler a"
    assert len(info["infotexts"]) == 2 and "Seed: 8, Size: 64x64" in info["infotexts"][1]
    assert result.parameters["seed"] == 7 and result.parameters["prompt"] == "a lighthouse"  # the request, echoed


def test_webuiapi_img2img_repaints_only_the_mask(server: str) -> None:
    rng = np.random.default_rng(3)
    init = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (24, 24, 40, 40))  # white = repaint
    # webuiapi's defaults: inpainting_fill 0 ("fill"), mask_blur 4, "only masked" on.
    result = _api(server).img2img(
        images=[init], mask_image=mask, prompt="a red door", seed=3, denoising_strength=0.75, mask_blur=4, **SMALL
    )
    out = np.asarray(result.image.convert("RGB"), dtype=np.int16)
    diff = np.abs(out - np.asarray(init, dtype=np.int16)).max(axis=2)
    assert result.image.size == (64, 64) and diff[28:36, 28:36].mean() > 5  # inside: repainted
    border = 3 * 4  # a Gaussian feather of radius 4 reaches about 3 radii out
    outside = np.ones_like(diff, dtype=bool)
    outside[24 - border : 40 + border, 24 - border : 40 + border] = False
    assert diff[outside].max() == 0  # outside: the init picture, to the pixel
    assert "Denoising strength: 0.75" in result.info["infotexts"][0]
    assert result.parameters["init_images"] is None and result.parameters["mask"] is None  # as A1111 echoes


def test_webuiapi_png_info_reads_our_own_png(server: str) -> None:
    api = _api(server)
    made = api.txt2img(prompt="a castle, at night", negative_prompt="fog", seed=11, **SMALL)
    read = api.png_info(made.image)  # webuiapi re-encodes the picture with its text chunks
    assert read.parameters["Prompt"] == "a castle, at night" and read.parameters["Negative prompt"] == "fog"
    assert read.parameters["Seed"] == "11" and read.parameters["Steps"] == "4"
    assert (read.parameters["Size-1"], read.parameters["Size-2"]) == ("64", "64")
    assert json.loads(read.json["items"]["cofounder-agent"])["params"]["seed"] == 11  # our own chunk, kept


@pytest.mark.parametrize("name", ["openwebui_txt2img", "openwebui_txt2img_with_params", "sillytavern_txt2img"])
def test_client_bodies_are_accepted_and_give_pictures(server: str, name: str) -> None:
    body = json.loads((CLIENTS / f"{name}.json").read_text())
    # Every key and value as the client sends it; only the picture size is made small (1024 px
    # takes minutes on a CPU).
    response = _post(server, {**body, "width": 64, "height": 64})
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert len(images) == 1 and not images[0].startswith("data:")  # raw base64, as A1111 answers
    with Image.open(io.BytesIO(base64.b64decode(images[0]))) as picture:
        assert picture.size == (64, 64) and picture.info["parameters"].startswith(body["prompt"])


def test_unknown_sampler_is_422_listing_the_accepted_names(server: str) -> None:
    response = _post(server, {"prompt": "x", "sampler_name": "LMS", **SMALL})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "sampler_name" and "Euler a, Euler, DPM++ 2M" in error["message"]


def test_seed_minus_one_draws_random_seeds(server: str) -> None:
    seeds = [json.loads(_post(server, {"prompt": "x", "seed": -1, **SMALL}).json()["info"])["all_seeds"] for _ in "ab"]
    assert seeds[0] != seeds[1] and all(len(s) == 1 and 0 <= s[0] < 2**32 for s in seeds)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"batch_size": 4, "n_iter": 3}, "batch_size"),
        ({"enable_hr": True, "hr_scale": 1.5}, "hr_scale"),
        ({"enable_hr": True, "hr_upscaler": "ESRGAN_4x"}, "hr_upscaler"),
        ({"restore_faces": True}, "restore_faces"),  # no IMAGE_FACE_MODEL on this server
        ({"tiling": True}, "tiling"),
        ({"width": 100}, "width"),
        ({"scheduler": "exponential"}, "scheduler"),
        ({"enable_hr": True, "denoising_strength": 0.01}, "denoising_strength"),
    ],
)
def test_what_cannot_be_honoured_is_422_naming_the_field(server: str, patch: dict[str, Any], field: str) -> None:
    response = _post(server, {"prompt": "x", **SMALL, **patch})
    assert response.status_code == 422 and response.json()["error"]["field"] == field, response.text


def test_img2img_refusals_name_the_field(server: str) -> None:
    init = _png(Image.new("RGB", (64, 64), (90, 90, 90)))
    black = _png(Image.new("L", (64, 64), 0))
    for patch, field in [
        ({"init_images": ["not a picture"]}, "init_images.0"),
        ({"mask": black}, "mask"),  # nothing white: nothing to repaint
        ({"mask": init, "inpainting_fill": 2}, "inpainting_fill"),
        ({"denoising_strength": 0.01}, "denoising_strength"),
    ]:
        response = _post(server, {"prompt": "x", "init_images": [init], **SMALL, **patch}, "/sdapi/v1/img2img")
        assert response.status_code == 422 and response.json()["error"]["field"] == field, response.text


def test_hires_fix_upscales_and_send_images_false_sends_none(server: str) -> None:
    body = {"prompt": "x", "enable_hr": True, "hr_scale": 2, "denoising_strength": 0.5, "send_images": False}
    response = _post(server, {**body, **SMALL})
    assert response.status_code == 200 and response.json()["images"] == []
    info = json.loads(response.json()["info"])
    assert "Size: 64x64" in info["infotexts"][0] and "Hires upscale: 2" in info["infotexts"][0]
    picture = httpx.get(f"{server}/v1/images/{info['image_ids'][0]}").content  # stored all the same
    with Image.open(io.BytesIO(picture)) as stored:
        assert stored.size == (128, 128)


def test_png_info_of_a_picture_without_parameters_and_of_bytes_that_are_none(server: str) -> None:
    plain = _post(server, {"image": "data:image/png;base64," + _png(Image.new("RGB", (8, 8)))}, "/sdapi/v1/png-info")
    assert plain.status_code == 200 and plain.json() == {"info": "", "items": {}, "parameters": {}}
    broken = _post(server, {"image": base64.b64encode(b"not a picture").decode()}, "/sdapi/v1/png-info")
    assert broken.status_code == 422 and broken.json()["error"]["field"] == "image"


def test_basic_auth_takes_the_api_key_as_password_and_pictures_take_the_upload_limit(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, image_api_key="s3cret", image_max_body_mb=0.01, image_max_upload_mb=0.1)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    with running_server(settings) as url:
        body = {"image": ""}
        right = _post(url, body, "/sdapi/v1/png-info", auth=("anyone", "s3cret"))
        # A picture over the JSON body limit but within the upload limit is read; one over it is a 413.
        picture = _post(url, {"image": _png(noise)}, "/sdapi/v1/png-info", auth=("anyone", "s3cret"))
        # The limit: the upload limit's base64 (4/3) plus 1 MB for the other fields.
        large = Image.fromarray(np.random.default_rng(1).integers(0, 255, (640, 640, 3), dtype=np.uint8))
        big = _post(url, {"image": _png(large)}, "/sdapi/v1/png-info", auth=("u", "s3cret"))
        wrong = _post(url, body, "/sdapi/v1/png-info", auth=("anyone", "guess"))
        # SillyTavern's "Basic " without credentials (HTTP drops the trailing space).
        empty = _post(url, body, "/sdapi/v1/png-info", headers={"Authorization": "Basic"})
    assert right.status_code == 200 and picture.status_code == 200, picture.text
    assert big.status_code == 413 and big.json()["error"]["field"] == "image"
    assert wrong.status_code == 401 and empty.status_code == 401
    assert 'Basic realm="cofounder-agent"' in wrong.headers.get_list("www-authenticate")


def test_without_a_key_empty_authorization_headers_are_ignored(server: str) -> None:
    # open-webui sends "authorization: " and SillyTavern "Authorization: Basic " (trailing space
    # dropped on the wire) when no auth is set.
    for value in ("", "Basic"):
        response = _post(server, {"image": ""}, "/sdapi/v1/png-info", headers={"Authorization": value})
        assert response.status_code == 200


def test_infotext_quotes_separators_and_parses_back() -> None:
    metadata = {
        "params": {"prompt": "a, b", "negative_prompt": None, "seed": 5, "steps": 20},
        "model": "/models/sd_xl_base_1.0.safetensors",
        "params_extra": None,
    }
    metadata["params"] |= {"guidance_scale": 7.5, "scheduler": "dpmpp_2m_karras", "refiner_mode": "none"}
    text = infotext(metadata, (1024, 768))
    assert text is not None and text.startswith("a, b\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras")
    parsed = parse(text)
    assert parsed["Prompt"] == "a, b" and parsed["CFG scale"] == "7.5" and parsed["Model"] == "sd_xl_base_1.0"
    assert (parsed["Size-1"], parsed["Size-2"]) == ("1024", "768")
    # A picture no denoising made (an upload upscaled by a learned model) has no infotext.
    learned = {"type": "upscale", "factor": 2, "upscaler": "x.safetensors"}
    stages = [{"outcome": "ok", "spec": learned}]
    upscaled = {"source": "refined", "params": metadata["params"], "recipe_stages": stages}
    assert infotext(upscaled, (128, 128)) is None


def test_a_cancelled_job_answers_200_with_the_pictures_done(server: str) -> None:
    # What /sdapi/v1/interrupt does (through the job service): A1111 answers with what it made.
    body = {"prompt": "x", "width": 64, "height": 64, "steps": 60, "batch_size": 3, "seed": 1}
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_post, server, body)
        deadline = time.monotonic() + LIMIT_S
        job: dict[str, Any] = {}
        while time.monotonic() < deadline and not pending.done():
            running = httpx.get(f"{server}/v1/jobs", params={"status": "running"}).json()["data"]
            job = running[0] if running else {}
            if job.get("progress", 0) > 0.4:  # the first of three pictures is done
                break
            time.sleep(0.05)
        assert httpx.delete(f"{server}/v1/jobs/{job['id']}", timeout=LIMIT_S).status_code == 200
        response = pending.result(timeout=LIMIT_S)
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert info["status"] == "cancelled" and info["all_seeds"] == [1, 2, 3]
    assert 1 <= len(response.json()["images"]) == len(info["infotexts"]) < 3
