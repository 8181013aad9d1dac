"""Admission by cost: a recipe's megapixel-steps, the field a refusal names, and the limit over HTTP."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from cofounder_agent.config import Settings
from cofounder_agent.contract.errors import DomainError
from cofounder_agent.contract.fields import JOB_FIELDS, OPENAI_FIELDS, SEED_FIELDS
from cofounder_agent.errors import status_of
from cofounder_agent.jobs.cost import MAX_DENOISE_PIXELS, check_cost, job_cost
from cofounder_agent.jobs.recipe_book import BUILT_IN, RecipeBook
from cofounder_agent.jobs.resolve import resolve_recipe
from cofounder_agent.schemas.jobs import JobCreate
from conftest import make_settings, running_server

BIG: dict[str, Any] = {"prompt": "a castle", "num_images": 8, "width": 2048, "height": 2048, "steps": 200}
INPUT = "ab" * 16  # an image id: the unit tests give its size directly


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def _resolved(settings: Settings, **body: Any) -> JobCreate:
    return resolve_recipe(JobCreate.model_validate({"prompt": "a castle", **body}), settings)


def _refused(
    recipe: JobCreate, sizes: list[tuple[int, int]], budget: float, fields: Mapping[str, str] = JOB_FIELDS
) -> DomainError:
    with pytest.raises(DomainError) as caught:
        check_cost(recipe, sizes, budget, fields)
    assert status_of(caught.value) == 422 and caught.value.code == "invalid_request"
    return caught.value


def _sizes(recipe: JobCreate) -> list[tuple[int, int]]:
    return [(recipe.width, recipe.height)]


@pytest.mark.parametrize("mode", ["ensemble", "img2img", "none"])
def test_every_built_in_recipe_with_eight_images_fits_the_default_budget(tmp_path: Path, mode: str) -> None:
    settings = make_settings(tmp_path, image_refiner_mode=mode)
    book = RecipeBook(tmp_path / "recipes")
    for name in BUILT_IN:
        recipe = resolve_recipe(book.apply(JobCreate(prompt="a castle", recipe=name, num_images=8)), settings)
        check_cost(recipe, _sizes(recipe), settings.image_max_job_cost)  # no error


def test_cost_is_pixels_times_steps_over_images_and_passes(settings: Settings) -> None:
    # 512x1024 is half of 1024x1024: 30 base steps, then a refine pass of int(20 x 0.5) = 10 steps.
    refine = {"type": "refine", "strength": 0.5, "steps": 20}
    recipe = _resolved(settings, width=512, height=1024, steps=30, num_images=3, stages=[refine])
    assert job_cost(recipe, _sizes(recipe)) == 3 * 0.5 * (30 + 10)
    # An img2img refiner adds its own int(30 x 0.3) = 9 steps per image.
    img2img = _resolved(settings, steps=40, refiner={"mode": "img2img", "steps": 30, "strength": 0.3})
    assert job_cost(img2img, _sizes(img2img)) == 40 + 9


def test_the_largest_generation_is_refused_naming_num_images(settings: Settings) -> None:
    recipe = _resolved(settings, **BIG)
    error = _refused(recipe, _sizes(recipe), settings.image_max_job_cost)
    assert error.field == "num_images"
    # 8 x 4 megapixels x 200 steps: the cost, the budget and what to lower.
    assert "6400" in error.message and "1000" in error.message and "lower num_images" in error.message
    check_cost(recipe, _sizes(recipe), 6400)  # a budget raised to it admits it


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"steps": 200}, "steps"),
        ({"width": 2048, "height": 1024}, "width"),
        ({"width": 1024, "height": 2048}, "height"),
        ({"refiner": {"mode": "img2img", "steps": 200, "strength": 1.0}}, "refiner.steps"),
    ],
)
def test_one_image_over_the_budget_names_what_makes_it_costly(
    settings: Settings, body: dict[str, Any], field: str
) -> None:
    recipe = _resolved(settings, **body)  # 40 steps at 1024x1024 unless the body says
    assert _refused(recipe, _sizes(recipe), 60).field == field


def test_eight_progressive_stages_of_eight_passes_are_refused_naming_a_stage(settings: Settings) -> None:
    stage = {"type": "progressive", "strengths": [0.5] * 8, "steps": 200}
    recipe = _resolved(settings, stages=[stage] * 8)
    # 40 base steps, then 8 passes of 100 steps a stage: the second stage goes over 1000.
    assert job_cost(recipe, _sizes(recipe)) == 40 + 8 * 800
    assert _refused(recipe, _sizes(recipe), settings.image_max_job_cost).field == "stages.1.strengths"


@pytest.mark.parametrize(
    ("stage", "field"),
    [
        ({"type": "refine"}, "stages.0.steps"),
        ({"type": "progressive"}, "stages.0.strengths"),
        ({"type": "adaptive"}, "stages.0.max_passes"),
        ({"type": "upscale", "factor": 4}, "stages.0.factor"),
        ({"type": "upscale", "factor": 2}, "stages.0.steps"),
        ({"type": "inpaint", "box": [0, 0, 64, 64]}, "stages.0.detail"),
        ({"type": "variations", "prompts": ["a", "b"]}, "stages.0.prompts"),
    ],
)
def test_each_stage_names_its_costly_field(settings: Settings, stage: dict[str, Any], field: str) -> None:
    recipe = _resolved(settings, input_image_ids=[INPUT], stages=[stage])
    assert _refused(recipe, [(512, 512)], 0.5).field == field


def test_face_restore_costs_nothing(settings: Settings) -> None:
    recipe = _resolved(settings, input_image_ids=[INPUT], stages=[{"type": "face_restore"}])
    assert job_cost(recipe, [(8192, 8192)]) == 0


def test_the_input_picture_that_goes_over_is_named(settings: Settings) -> None:
    # int(30 x 0.3) = 9 steps on each 1024x1024 picture: the third goes over 20.
    recipe = _resolved(settings, input_image_ids=[INPUT] * 3, stages=[{"type": "refine"}])
    assert _refused(recipe, [(1024, 1024)] * 3, 20).field == "input_image_ids.2"


def test_whole_picture_stages_refuse_pictures_larger_than_the_base_generates(settings: Settings) -> None:
    for stage in ({"type": "refine"}, {"type": "adaptive"}, {"type": "inpaint", "box": [0, 0, 64, 64]}):
        recipe = _resolved(settings, input_image_ids=[INPUT], stages=[stage])
        error = _refused(recipe, [(8192, 8192)], float("inf"))  # refused whatever the budget
        assert error.field == "stages.0.type" and "upscale" in error.message
    # A generated 2048x2048 picture may be refined; enlarged, only tiles may follow.
    chain = [{"type": "refine"}, {"type": "upscale"}, {"type": "refine"}]
    recipe = _resolved(settings, width=2048, height=2048, stages=chain)
    assert _refused(recipe, _sizes(recipe), float("inf")).field == "stages.2.type"
    # The limit is the largest picture the job API generates.
    assert JobCreate.model_json_schema()["properties"]["width"]["maximum"] ** 2 == MAX_DENOISE_PIXELS


def test_upscaling_a_stored_4096_picture_twice_fits(settings: Settings) -> None:
    recipe = _resolved(settings, input_image_ids=[INPUT], stages=[{"type": "upscale", "factor": 2}])
    check_cost(recipe, [(4096, 4096)], settings.image_max_job_cost)
    # 512 px tiles overlapping by 64 start every 448 px (0 ... 7616) plus one flush with the
    # edge: 19 a side, each a quarter megapixel refined for int(20 x 0.2) = 4 steps.
    assert job_cost(recipe, [(4096, 4096)]) == 19 * 19 * 0.25 * 4


def test_refusals_use_each_endpoint_s_own_field_names(settings: Settings) -> None:
    seed = _resolved(settings, steps=100)
    assert _refused(seed, _sizes(seed), 50, SEED_FIELDS).field == "num_inference_steps"
    openai = _resolved(settings, num_images=8, width=2048, height=2048)
    assert _refused(openai, _sizes(openai), settings.image_max_job_cost, OPENAI_FIELDS).field == "n"
    assert _refused(openai, _sizes(openai), 100, OPENAI_FIELDS).field == "size"


def test_the_budget_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGE_MAX_JOB_COST", "7000")
    assert Settings(_env_file=None).image_max_job_cost == 7000  # type: ignore[call-arg]


# Over HTTP: the 422 comes before the job is queued, so no job runs.


def _error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "invalid_request"
    return error


def test_each_endpoint_refuses_a_job_over_the_budget(tiny_server: str) -> None:
    with httpx.Client(base_url=tiny_server, timeout=60) as client:
        before = client.get("/v1/jobs").json()["count"]
        assert _error(client.post("/v1/jobs", json=BIG))["field"] == "num_images"
        openai = {"prompt": "a castle", "n": 8, "size": "2048x2048"}  # 8 x 4 MP x 40 steps = 1280
        refused = client.post("/v1/images/generations", json=openai)  # OpenAI's shape and status there
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "n"
        seed = {
            "prompt": "a castle",
            "use_generation": True,
            "use_pexels": False,
            "width": 2048,
            "height": 2048,
            "num_inference_steps": 100,  # 400, then an img2img refiner of 200 steps: 1200
            "refiner_mode": "img2img",
            "refiner_steps": 200,
            "refiner_strength": 1.0,
        }
        assert _error(client.post("/api/media/generate-image", json=seed))["field"] == "refiner_steps"
        assert client.get("/v1/jobs").json()["count"] == before  # nothing was queued


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 130, 140)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def raised_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose budget admits 8 x 2048x2048 x 200 steps.

    Its model is missing, so an admitted job fails at once instead of running for an hour.
    """
    root = tmp_path_factory.mktemp("raised")
    settings = make_settings(root, image_model=str(root / "no-such-model"), image_max_job_cost=6400)
    with running_server(settings) as url:
        yield url


def test_a_raised_budget_admits_the_job(raised_server: str) -> None:
    with httpx.Client(base_url=raised_server, timeout=60) as client:
        response = client.post("/v1/jobs", json=BIG)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        over = client.post("/v1/jobs", json={**BIG, "steps": 199, "refiner": {"mode": "img2img"}})
        assert _error(over)["field"] == "num_images"  # 7 images fit, the eighth does not
        deadline = time.monotonic() + 120
        while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] not in ("failed", "succeeded"):
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        assert job["status"] == "failed"  # no model: it never denoised


def test_stored_pictures_are_refined_only_within_bounds(raised_server: str) -> None:
    with httpx.Client(base_url=raised_server, timeout=60) as client:
        uploaded = client.post("/v1/images", files={"file": ("big.png", _png((4096, 4096)), "image/png")})
        assert uploaded.status_code == 201, uploaded.text
        image_id = uploaded.json()["id"]
        refine = {"prompt": "a castle", "input_image_ids": [image_id], "stages": [{"type": "refine"}]}
        assert _error(client.post("/v1/jobs", json=refine))["field"] == "stages.0.type"
        upscale = {**refine, "stages": [{"type": "upscale", "factor": 2}]}
        assert client.post("/v1/jobs", json=upscale).status_code == 202
