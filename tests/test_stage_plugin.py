"""A stage is one file: a stage defined here, registered, is validated, documented and run by a real server."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import httpx
import numpy as np
import pytest
from PIL import Image, ImageOps
from pydantic import ValidationError

from cofounder_agent.contract.params import GenerationParams
from cofounder_agent.contract.registry import register, registered, unregister
from cofounder_agent.contract.stage import StageOps, StageOutput, StageSpec
from cofounder_agent.schemas.jobs import JobCreate
from conftest import LIMIT_S, make_settings, pixels, running_server, wait_job, wait_ready

FAST: dict[str, Any] = {"prompt": "a lighthouse on a cliff", "width": 64, "height": 64, "steps": 6, "seed": 3}


class MirrorStage(StageSpec):
    """Mirror the picture left to right: no model, no denoising step, no cost."""

    type: Literal["mirror"]

    def run(
        self, ops: StageOps, image: Image.Image, params: GenerationParams, inputs: Mapping[str, Image.Image | None]
    ) -> StageOutput:
        return StageOutput(ImageOps.mirror(image))


class FlipStage(StageSpec):
    """Flip the picture top to bottom; registered only inside one test."""

    type: Literal["flip"]

    def run(
        self, ops: StageOps, image: Image.Image, params: GenerationParams, inputs: Mapping[str, Image.Image | None]
    ) -> StageOutput:
        return StageOutput(ImageOps.flip(image))


@pytest.fixture(scope="module")
def plugin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server started after the mirror stage was registered; the registration ends with it."""
    register(MirrorStage)
    try:
        with running_server(make_settings(tmp_path_factory.mktemp("plugin"))) as url:
            wait_ready(url)
            yield url
    finally:
        unregister("mirror")


def test_a_stage_is_a_job_option_exactly_while_it_is_registered() -> None:
    body = {"prompt": "x", "stages": [{"type": "flip"}]}
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        JobCreate.model_validate(body)
    register(FlipStage)
    try:
        assert isinstance(JobCreate.model_validate(body).stages[0], FlipStage)
    finally:
        unregister("flip")
    assert "flip" not in registered()
    with pytest.raises(ValidationError):
        JobCreate.model_validate(body)


def test_a_registered_stage_runs_through_the_job_api(plugin_server: str) -> None:
    body = {**FAST, "refiner": {"mode": "none"}, "stages": [{"type": "mirror"}], "keep_intermediates": True}
    with httpx.Client(base_url=plugin_server, timeout=LIMIT_S) as client:
        response = client.post("/v1/jobs", json=body)
        assert response.status_code in (200, 202), response.text
        job = wait_job(client, response.json()["id"])
        assert job["status"] == "succeeded", job["error"]
        (result,) = job["results"]
        (record,) = result["recipe_stages"]
        assert record["spec"] == {"type": "mirror"} and record["outcome"] == "ok"
        (generated_id,) = result["intermediate_ids"]
        generated = pixels(client.get(f"/v1/images/{generated_id}").content)
        final = pixels(client.get(f"/v1/images/{result['image_id']}").content)
    assert np.abs(generated - generated[:, ::-1]).max() > 0  # not symmetric: the check below can fail
    assert np.array_equal(final, generated[:, ::-1])


def test_an_unknown_option_of_a_registered_stage_is_a_422_naming_it(plugin_server: str) -> None:
    body = {**FAST, "stages": [{"type": "mirror", "angle": 90}]}
    response = httpx.post(f"{plugin_server}/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    # The stage's type sits in the path as for every stage (stages.0.refine.strength).
    assert response.json()["error"]["field"] == "stages.0.mirror.angle"


def test_the_openapi_document_lists_a_registered_stage(plugin_server: str) -> None:
    doc = httpx.get(f"{plugin_server}/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert schemas["MirrorStage"]["properties"]["type"]["const"] == "mirror"
    assert schemas["MirrorStage"]["additionalProperties"] is False  # a strict body, as every stage
    items = schemas["JobCreate"]["properties"]["stages"]["items"]
    refs = {choice["$ref"].rsplit("/", 1)[-1] for choice in items["oneOf"]}
    assert {"MirrorStage", "RefineStage", "FaceRestoreStage"} <= refs
    assert items["discriminator"]["mapping"]["mirror"] == "#/components/schemas/MirrorStage"
