"""A1111's auxiliary `/sdapi/v1` endpoints on a real server, with the real webuiapi client and the
calls open-webui and SillyTavern make (as read from their source: /work/wt/notes/issue13/RESEARCH.md).
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import webuiapi
from PIL import Image

from cofounder_agent.contract.a1111_names import SAMPLERS, SCHEDULE_TYPES
from conftest import LIMIT_S, make_settings, running_server, wait_job, wait_ready

# Slow enough on 2 CPU cores (~0.1 s a step) to be interrupted mid-run.
SLOW: dict[str, Any] = {"prompt": "a slow lighthouse", "width": 384, "height": 384, "steps": 100}
# SillyTavern and open-webui send an Authorization header even without credentials: "Basic "
# (which fetch sends trimmed, as httpx must) and an empty one.
EMPTY_AUTH = ({"Authorization": "Basic"}, {"authorization": ""})


def _esrgan(path: Path, scale: int) -> None:
    """A tiny random-weight ESRGAN built with spandrel's own architecture, saved as safetensors."""
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(scale)
    save_file(ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale).state_dict(), str(path))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("a1111")


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[str]:
    models = root / "models"
    models.mkdir()
    _esrgan(models / "esrgan-x2.safetensors", 2)
    (models / "GFPGANv1.4.safetensors").write_bytes(b"a face model, by its name: not an upscaler")
    with running_server(make_settings(root, image_models_dir=models)) as url:
        wait_ready(url)
        yield url


@pytest.fixture
def api(server: str) -> webuiapi.WebUIApi:
    return webuiapi.WebUIApi(baseurl=f"{server}/sdapi/v1")


def _picture(width: int = 48, height: int = 32) -> Image.Image:
    return Image.radial_gradient("L").convert("RGB").resize((width, height))


def _png_base64(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 140, 200)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _pictures(root: Path) -> set[Path]:
    return {p for p in (root / "data").rglob("*") if p.suffix in (".png", ".jpg", ".webp")}


def _wait_running(client: httpx.Client, job_id: str) -> None:
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] == "running" and job["step"] >= 2:
            return
        time.sleep(0.02)
    raise TimeoutError(job_id)


def _wait_idle(api: webuiapi.WebUIApi) -> dict[str, Any]:
    """Poll /progress as webuiapi's util_wait_for_ready does, with a deadline."""
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline:
        progress: dict[str, Any] = api.get_progress()
        if progress["progress"] == 0.0 and progress["state"]["job_count"] == 0:
            return progress
        time.sleep(0.05)
    raise TimeoutError("the server did not become idle")


# 1. Idle state, lists and options, through webuiapi.


def test_idle_progress_is_zero_with_no_jobs(api: webuiapi.WebUIApi) -> None:
    progress = _wait_idle(api)
    # Integers and numbers as SillyTavern's strict `=== 0` tests read them.
    assert type(progress["state"]["job_count"]) is int and progress["eta_relative"] == 0
    assert progress["current_image"] is None and progress["state"]["job"] == ""


def test_lists_name_what_the_server_runs(api: webuiapi.WebUIApi) -> None:
    assert api.util_get_sampler_names() == sorted(s.name for s in SAMPLERS)
    assert api.util_get_scheduler_names() == sorted(name for name, _ in SCHEDULE_TYPES)
    samplers = {s["name"]: s for s in api.get_samplers()}
    assert samplers["Euler a"]["aliases"] == ["k_euler_a", "k_euler_ancestral"]
    karras = next(s for s in api.get_schedulers() if s["name"] == "karras")
    assert karras == {
        "name": "karras",
        "label": "Karras",
        "aliases": None,
        "default_rho": 7.0,
        "need_inner_model": False,
    }
    upscalers = [u["name"] for u in api.get_upscalers()]
    assert upscalers == ["None", "Lanczos", "esrgan-x2"]  # the face model's file is not an upscaler
    assert api.get_latent_upscale_modes() == [{"name": "Latent"}]
    assert api.get_sd_vae() == []
    assert api.get_scripts() == {"txt2img": [], "img2img": []}


def test_options_name_the_loaded_model_and_take_it_back(api: webuiapi.WebUIApi) -> None:
    models = api.get_sd_models()
    assert len(models) == 1 and models[0]["model_name"] == "tiny"
    title = models[0]["title"]
    assert api.util_get_model_names() == [title]
    options = api.get_options()
    assert options["sd_model_checkpoint"] == title == api.util_get_current_model()
    assert options["sd_checkpoint_hash"] == models[0]["sha256"]
    assert (options["sd_vae"], options["CLIP_stop_at_last_layers"], options["samples_format"]) == (
        "Automatic",
        1,
        "png",
    )
    assert "forge_preset" not in options  # SillyTavern then treats the server as A1111
    # open-webui: the whole dict it read, posted back; webuiapi: the closest title.
    assert api.set_options(options) is None
    api.util_set_model("TINY")
    assert api.get_options() == options


def test_options_refuse_a_model_the_server_does_not_run(server: str) -> None:
    with httpx.Client(base_url=server) as client:
        refused = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "sd_xl_base_1.0.safetensors"})
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["field"] == "sd_model_checkpoint" and "tiny [" in error["message"]
        # Anything else is accepted and ignored, whatever its type.
        ignored = client.post("/sdapi/v1/options", json={"samples_format": "jpg", "x": [1, {"y": None}], "z": 3})
        assert ignored.status_code == 200 and ignored.json() is None
        assert client.get("/sdapi/v1/options").json()["samples_format"] == "png"


# 2. A running job: progress, interrupt and skip.


@pytest.mark.parametrize("call", ["interrupt", "skip"])
def test_interrupt_and_skip_cancel_the_running_job(server: str, api: webuiapi.WebUIApi, call: str) -> None:
    with httpx.Client(base_url=server, timeout=LIMIT_S) as client:
        job = client.post("/v1/jobs", json=SLOW).json()
        _wait_running(client, job["id"])
        progress = api.get_progress()
        state = progress["state"]
        assert state["job"] == job["id"] and state["job_count"] >= 1 and not state["interrupted"]
        assert 0 < progress["progress"] <= 1 and state["sampling_steps"] > 0 and state["job_timestamp"] != "0"
        answer = getattr(api, call)()
        assert answer == ({} if call == "interrupt" else None)
        ended = wait_job(client, job["id"])
        assert ended["status"] == "cancelled" and "cancelled while running" in ended["error"]
        _wait_idle(api)


# 3. extra-single-image: the upscale stage through the queue.


@pytest.mark.parametrize(("factor", "upscaler"), [(2, "None"), (4, "Lanczos"), (2, "esrgan-x2")])
def test_extra_single_image_upscales_by_the_factor(api: webuiapi.WebUIApi, factor: int, upscaler: str) -> None:
    result = api.extra_single_image(_picture(), upscaling_resize=factor, upscaler_1=upscaler)
    assert result.image.size == (48 * factor, 32 * factor)
    assert f"Postprocess upscale by: {factor}" in result.info


def test_extra_single_image_takes_raw_base64(server: str) -> None:
    buffer = io.BytesIO()
    _picture(40, 40).save(buffer, format="PNG")
    body = {"image": base64.b64encode(buffer.getvalue()).decode(), "upscaling_resize": 2, "url": "ignored"}
    with httpx.Client(base_url=server, timeout=LIMIT_S) as client:
        answer = client.post("/sdapi/v1/extra-single-image", json=body)
    assert answer.status_code == 200, answer.text
    with Image.open(io.BytesIO(base64.b64decode(answer.json()["image"]))) as image:
        assert (image.format, image.size) == ("PNG", (80, 80))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"upscaling_resize": 3}, "upscaling_resize"),
        ({"resize_mode": 1}, "resize_mode"),
        ({"upscaler_1": "R-ESRGAN 4x+"}, "upscaler_1"),
        ({"gfpgan_visibility": 0.5}, "gfpgan_visibility"),
        ({"codeformer_visibility": 1}, "codeformer_visibility"),
        ({"extras_upscaler_2_visibility": 0.3, "upscaler_2": "Lanczos"}, "extras_upscaler_2_visibility"),
        ({"image": "not base64!"}, "image"),
        ({"image": _png_base64(2100, 2100), "upscaling_resize": 4}, "upscaling_resize"),  # over 8192^2 pixels
        ({"image": base64.b64encode(b"not a picture").decode()}, "image"),
    ],
)
def test_extra_single_image_refuses_what_does_not_map(
    server: str, root: Path, change: dict[str, Any], field: str
) -> None:
    buffer = io.BytesIO()
    _picture().save(buffer, format="PNG")
    body = {"image": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(), **change}
    with httpx.Client(base_url=server, timeout=LIMIT_S) as client:
        pictures = _pictures(root)
        answer = client.post("/sdapi/v1/extra-single-image", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["field"] == field
    assert _pictures(root) == pictures  # a refused request leaves no upload behind


# 4. SillyTavern's and open-webui's calls (their server code's requests, header included).


@pytest.mark.parametrize("auth", EMPTY_AUTH)
def test_sillytavern_calls(server: str, auth: dict[str, str]) -> None:
    with httpx.Client(base_url=f"{server}/sdapi/v1", headers=auth, timeout=LIMIT_S) as client:
        options = client.get("/options")  # /ping and /get-model
        assert options.status_code == 200 and isinstance(options.json()["sd_model_checkpoint"], str)
        for path in ("/upscalers", "/latent-upscale-modes", "/samplers", "/schedulers", "/sd-models"):
            items = client.get(path)
            assert items.status_code == 200 and all(
                isinstance(x["name" if path != "/sd-models" else "title"], str) for x in items.json()
            )
        assert client.get("/sd-vae").json() == []  # ST reads x.model_name of each
        # /set-model: the title from /sd-models, then /progress until idle (strict `=== 0`).
        title = client.get("/sd-models").json()[0]["title"]
        assert client.post("/options", json={"sd_model_checkpoint": title}).status_code == 200
        progress = client.get("/progress").json()
        assert progress["progress"] == 0 and progress["state"]["job_count"] == 0
        assert client.post("/interrupt").json() == {}  # on a closed browser socket, without a body


def test_openwebui_set_image_model_posts_the_whole_dict_back(server: str) -> None:
    with httpx.Client(base_url=f"{server}/sdapi/v1", headers={"authorization": ""}) as client:
        options = client.get("/options").json()
        models = client.get("/sd-models").json()
        assert {"title", "model_name"} <= models[0].keys()
        posted = client.post("/options", json={**options, "sd_model_checkpoint": models[0]["title"]})
        assert posted.status_code == 200
