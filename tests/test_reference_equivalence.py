"""The service's pixels equal diffusers' documented SDXL recipe on the same components.

The service is a real server loading the exported tiny model from its folders
(IMAGE_MODEL=DIR/base, IMAGE_REFINER_MODEL=DIR/refiner); the reference is plain
StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline loaded independently from the
same folders, with one CPU generator seeded with S passed to both calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from conftest import LIMIT_S, fetch_image, make_settings, max_diff, running_server, wait_ready

SEED, STEPS, GUIDANCE, WIDTH, HEIGHT = 1234, 20, 7.0, 96, 64
PROMPT = "a castle on a hill at dawn"


@pytest.fixture(scope="module")
def folder_server(tiny_dirs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = make_settings(
        tmp_path_factory.mktemp("eq"), image_model=str(tiny_dirs[0]), image_refiner_model=str(tiny_dirs[1])
    )
    with running_server(settings) as url:
        wait_ready(url)
        yield url


def _service(url: str, **fields: Any) -> Any:
    body = {
        "prompt": PROMPT,
        "use_generation": True,
        "use_pexels": False,
        "seed": SEED,
        "num_inference_steps": STEPS,
        "guidance_scale": GUIDANCE,
        "width": WIDTH,
        "height": HEIGHT,
        **fields,
    }
    with httpx.Client(timeout=LIMIT_S) as client:
        response = client.post(f"{url}/api/media/generate-image", json=body)
        assert response.json()["model"].endswith("base")  # served from the folder, not the built-in
        assert response.json()["source"] == "sdxl"
        return fetch_image(client, response)


def _reference(reference: Any, mode: str, *, negative: str | None = None, switch: float = 0.8) -> Any:
    base, refiner = reference
    generator = torch.Generator("cpu").manual_seed(SEED)
    common = {"prompt": PROMPT, "negative_prompt": negative, "guidance_scale": GUIDANCE, "generator": generator}
    if mode == "none":
        return base(**common, num_inference_steps=STEPS, width=WIDTH, height=HEIGHT).images[0]
    if mode == "ensemble":
        latents = base(
            **common, num_inference_steps=STEPS, denoising_end=switch, width=WIDTH, height=HEIGHT, output_type="latent"
        ).images
        return refiner(**common, num_inference_steps=STEPS, denoising_start=switch, image=latents).images[0]
    latents = base(**common, num_inference_steps=STEPS, width=WIDTH, height=HEIGHT, output_type="latent").images
    return refiner(**common, num_inference_steps=30, strength=0.3, image=latents).images[0]


def test_ensemble_matches_reference(folder_server: str, reference: Any) -> None:
    got = _service(folder_server, refiner_mode="ensemble")
    assert max_diff(got, _reference(reference, "ensemble")) <= 1


def test_ensemble_other_switch_point_matches_reference(folder_server: str, reference: Any) -> None:
    got = _service(folder_server, refiner_mode="ensemble", switch_at=0.65)
    assert max_diff(got, _reference(reference, "ensemble", switch=0.65)) <= 1


def test_img2img_matches_reference(folder_server: str, reference: Any) -> None:
    got = _service(folder_server, refiner_mode="img2img", refiner_steps=30, refiner_strength=0.3)
    assert max_diff(got, _reference(reference, "img2img")) <= 1


def test_none_matches_reference(folder_server: str, reference: Any) -> None:
    got = _service(folder_server, use_refinement=False)
    assert max_diff(got, _reference(reference, "none")) <= 1


def test_negative_prompt_matches_reference(folder_server: str, reference: Any) -> None:
    got = _service(folder_server, negative_prompt="blurry, low quality")
    assert max_diff(got, _reference(reference, "ensemble", negative="blurry, low quality")) <= 1


def test_the_comparison_can_fail(folder_server: str, reference: Any) -> None:
    """Prompt, negative prompt and the refiner each move pixels beyond the tolerance of 1."""
    ensemble = _service(folder_server)
    assert max_diff(ensemble, _service(folder_server, prompt="a red dragon over a stormy sea")) > 2
    assert max_diff(ensemble, _reference(reference, "ensemble", negative="blurry, low quality")) > 2
    assert max_diff(ensemble, _reference(reference, "none")) > 2


@pytest.fixture(scope="module")
def fast_server(tiny_dirs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same folders with the fast path's CPU-applicable switches on."""
    settings = make_settings(
        tmp_path_factory.mktemp("fast"),
        image_model=str(tiny_dirs[0]),
        image_refiner_model=str(tiny_dirs[1]),
        image_channels_last=True,
        image_fuse_qkv=True,
    )
    with running_server(settings) as url:
        wait_ready(url)
        yield url


@pytest.mark.parametrize("mode", ["ensemble", "img2img"])
def test_the_fast_path_still_matches_reference(fast_server: str, reference: Any, mode: str) -> None:
    extra = {"refiner_steps": 30, "refiner_strength": 0.3} if mode == "img2img" else {}
    assert httpx.get(f"{fast_server}/api/media/health").json()["fast_path"] == ["channels_last", "fuse_qkv"]
    got = _service(fast_server, refiner_mode=mode, **extra)
    # Fused projections and NHWC convolutions add and multiply in another order: rounding only.
    assert max_diff(got, _reference(reference, mode)) <= 2
