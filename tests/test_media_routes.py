"""The seed-compatible API on a real server: validation, reproducibility, concurrency, health."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from conftest import LIMIT_S, fetch_image, max_diff, pixels

URL = "/api/media/generate-image"
SMALL: dict[str, Any] = {"prompt": "a castle", "use_generation": True, "use_pexels": False, "width": 64, "height": 64}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"num_inference_steps": 5}, "num_inference_steps"),
        ({"num_inference_steps": 500}, "num_inference_steps"),
        ({"guidance_scale": 0}, "guidance_scale"),
        ({"width": 1001}, "width"),
        ({"width": 100000}, "width"),
        ({"height": 56}, "height"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"refiner_mode": "turbo"}, "refiner_mode"),
        ({"scheduler": "plms"}, "scheduler"),
        ({"seed": -1}, "seed"),
        ({"switch_at": 1.5}, "switch_at"),
        ({"colour": "red"}, "colour"),
        ({"keywords": "not-a-list"}, "keywords"),
    ],
)
def test_bad_input_is_422_naming_the_field(tiny_server: str, patch: dict[str, Any], field: str) -> None:
    response = httpx.post(tiny_server + URL, json={**SMALL, **patch})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == field
    assert field in error["message"]


def test_missing_prompt_and_malformed_json_are_422(tiny_server: str) -> None:
    missing = httpx.post(tiny_server + URL, json={"use_generation": True})
    assert (missing.status_code, missing.json()["error"]["field"]) == (422, "prompt")
    broken = httpx.post(tiny_server + URL, content=b'{"prompt": ', headers={"Content-Type": "application/json"})
    assert (broken.status_code, broken.json()["error"]["field"]) == (422, "body")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"use_refinement": False, "refiner_mode": "ensemble"}, "refiner_mode"),
        # options the chosen mode would ignore are refused, not dropped
        ({"refiner_mode": "ensemble", "refiner_steps": 10}, "refiner_steps"),
        ({"refiner_mode": "none", "refiner_strength": 0.5}, "refiner_strength"),
        ({"refiner_mode": "img2img", "switch_at": 0.7}, "switch_at"),
        # schedules in which a stage would run no step at all
        ({"refiner_mode": "img2img", "refiner_steps": 3, "refiner_strength": 0.3}, "refiner_strength"),
        ({"refiner_mode": "ensemble", "switch_at": 0.9999}, "switch_at"),  # no timestep below the cutoff
        ({"refiner_mode": "ensemble", "switch_at": 0.01}, "switch_at"),
    ],
)
def test_inconsistent_refiner_options_are_422(tiny_server: str, patch: dict[str, Any], field: str) -> None:
    response = httpx.post(tiny_server + URL, json={**SMALL, "num_inference_steps": 20, **patch})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_smallest_valid_schedules_generate(tiny_server: str) -> None:
    for patch in (
        {"refiner_mode": "img2img", "refiner_steps": 4, "refiner_strength": 0.25},
        {"refiner_mode": "ensemble", "switch_at": 0.95},
    ):
        response = httpx.post(tiny_server + URL, json={**SMALL, "num_inference_steps": 20, **patch}, timeout=LIMIT_S)
        assert response.status_code == 200, response.text
        assert response.json()["refiner"]["applied"] is True


def test_form_posts_from_web_pages_are_not_read_as_json(tiny_server: str) -> None:
    body = json.dumps({**SMALL, "num_inference_steps": 20})
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"}
    response = httpx.post(tiny_server + URL, content=body, headers=headers)
    assert response.status_code == 422


def test_no_source_is_a_clear_503(tiny_server: str) -> None:
    response = httpx.post(tiny_server + URL, json={"prompt": "a castle", "use_generation": False})
    assert response.status_code == 503
    message = response.json()["error"]["message"]
    assert "use_generation is false" in message and "PEXELS_API_KEY is not set" in message


def test_curl_default_form_content_type_is_read_as_json(tiny_server: str) -> None:
    body = json.dumps({**SMALL, "seed": 3, "num_inference_steps": 20})
    response = httpx.post(
        tiny_server + URL, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 200, response.text


def test_generate_reports_source_seed_refiner_and_timings(tiny_server: str) -> None:
    with httpx.Client(timeout=LIMIT_S) as client:
        response = client.post(tiny_server + URL, json={**SMALL, "seed": 42, "num_inference_steps": 20})
        body = response.json()
        image = fetch_image(client, response)
    assert body["source"] == "tiny" and body["seed"] == 42 and body["model"] == "tiny"
    # The synchronous endpoint is submit-and-wait on the job queue: the job is on record.
    job = httpx.get(f"{tiny_server}/v1/jobs/{body['job_id']}").json()
    assert job["status"] == "succeeded" and job["image_ids"] == [body["image_id"]]
    assert body["image_url"] == f"{tiny_server}/v1/images/{body['image_id']}"
    assert body["refiner"] == {
        "mode": "ensemble",
        "applied": True,
        "fallback_reason": None,
        "switch_at": 0.8,
        "steps": None,
        "strength": None,
    }
    assert set(body["timings"]) == {"base_s", "refiner_s", "decode_s", "total_s"}
    assert image.shape == (64, 64, 3)


def test_png_carries_its_generation_parameters(tiny_server: str) -> None:
    with httpx.Client(timeout=LIMIT_S) as client:
        body = client.post(tiny_server + URL, json={**SMALL, "seed": 5, "negative_prompt": "fog"}).json()
        png = client.get(body["image_url"]).content
    import io

    with Image.open(io.BytesIO(png)) as image:
        meta, infotext = json.loads(image.info["cofounder-agent"]), image.info["parameters"]
    assert meta["params"]["seed"] == 5 and meta["params"]["prompt"] == "a castle"
    assert meta["params"]["negative_prompt"] == "fog" and meta["params"]["refiner_mode"] == "ensemble"
    assert meta["tiny_model"] is True and [s["name"] for s in meta["stages"]] == ["base", "refiner", "decode"]
    # A1111's infotext in the parameters chunk, for the tools that read A1111's PNGs.
    prompt, negative, line = infotext.split("\n")
    assert (prompt, negative) == ("a castle", "Negative prompt: fog")
    assert line.startswith("Steps: ") and ", Seed: 5, Size: " in line and "Version: cofounder-agent " in line


def test_random_seed_is_returned_and_reproduces(tiny_server: str) -> None:
    with httpx.Client(timeout=LIMIT_S) as client:
        first = client.post(tiny_server + URL, json=SMALL)
        seed = first.json()["seed"]
        again = client.post(tiny_server + URL, json={**SMALL, "seed": seed})
        assert max_diff(fetch_image(client, first), fetch_image(client, again)) == 0


def test_low_quality_defaults_to_30_base_steps(tiny_server: str) -> None:
    body = httpx.post(tiny_server + URL, json={**SMALL, "high_quality": False}, timeout=LIMIT_S).json()
    assert body["num_inference_steps"] == 30
    explicit = httpx.post(
        tiny_server + URL, json={**SMALL, "high_quality": False, "num_inference_steps": 24}, timeout=LIMIT_S
    ).json()
    assert explicit["num_inference_steps"] == 24


async def test_eight_concurrent_requests_equal_their_single_outputs(tiny_server: str) -> None:
    bodies = [{**SMALL, "seed": 100 + i, "prompt": f"castle number {i}", "num_inference_steps": 20} for i in range(8)]
    async with httpx.AsyncClient(base_url=tiny_server, timeout=LIMIT_S) as client:
        concurrent = await asyncio.gather(*(client.post(URL, json=b) for b in bodies))
        assert [r.status_code for r in concurrent] == [200] * 8
        concurrent_px = [pixels((await client.get(r.json()["image_url"])).content) for r in concurrent]
        for body, got in zip(bodies, concurrent_px, strict=True):
            alone = await client.post(URL, json=body)
            assert max_diff(got, pixels((await client.get(alone.json()["image_url"])).content)) == 0
    # Different seeds really give different images, so equality above is not vacuous.
    assert max_diff(concurrent_px[0], concurrent_px[1]) > 50


def test_health_endpoints(tiny_server: str) -> None:
    assert httpx.get(tiny_server + "/healthz").json() == {"status": "ok"}
    assert httpx.get(tiny_server + "/readyz").json() == {"status": "ready"}
    health = httpx.get(tiny_server + "/api/media/health").json()
    # The tiny model generates, but it is not SDXL: clients deciding on sdxl_ok are not misled.
    assert health["generation_ok"] is True and health["sdxl_ok"] is False and health["pexels_ok"] is False
    assert health["tiny_model"] is True and "not SDXL" in health["model_note"]
    assert (health["status"], health["device"], health["precision"]) == ("degraded", "cpu", "fp32")


@pytest.mark.parametrize(
    "image_id", ["..%2f..%2fetc%2fpasswd", "%2e%2e%2fetc", "..", "0" * 31 + "g", "%2Fetc%2Fpasswd", "0" * 32]
)
def test_unknown_or_path_like_image_ids_are_404(tiny_server: str, image_id: str) -> None:
    for method, path in (
        ("GET", f"/v1/images/{image_id}"),
        ("GET", f"/v1/images/{image_id}?variant=thumbnail"),
        ("GET", f"/v1/images/{image_id}/metadata"),
        ("DELETE", f"/v1/images/{image_id}"),
    ):
        response = httpx.request(method, tiny_server + path)
        assert response.status_code == 404, (method, path)
        assert response.headers["content-type"] == "application/json"
