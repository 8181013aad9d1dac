"""Schedule checks before queueing and exact progress totals, over HTTP and on the engine."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cofounder_agent.contract.params import GenerationParams, LoadOptions
from cofounder_agent.engine.generate import TwoStageGenerator
from cofounder_agent.engine.models import load_models
from cofounder_agent.jobs.resolve import denoising_steps
from cofounder_agent.stages import RefineStage
from conftest import wait_job

SMALL: dict[str, Any] = {"prompt": "a castle", "width": 64, "height": 64}


@pytest.fixture(scope="module")
def generator() -> TwoStageGenerator:
    return TwoStageGenerator(load_models(LoadOptions(model="tiny", refiner_model="tiny")))


def test_five_steps_switching_at_point_eight_run_as_a_job(tiny_server: str) -> None:
    body = {**SMALL, "steps": 5, "refiner": {"mode": "ensemble", "switch_at": 0.8}}
    with httpx.Client(base_url=tiny_server, timeout=120) as client:
        response = client.post("/v1/jobs", json=body)
        assert response.status_code in (200, 202), response.text
        job = wait_job(client, response.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["results"][0]["refiner_applied"] is True


@pytest.mark.parametrize(
    ("body", "field", "advice"),
    [
        (
            {"steps": 5, "refiner": {"mode": "ensemble", "switch_at": 0.9999}},
            "refiner.switch_at",
            "refiner.switch_at between 0.2 and 0.99",
        ),
        ({"steps": 5, "refiner": {"mode": "ensemble", "switch_at": 0.1}}, "refiner.switch_at", "steps at least 10"),
        (
            {"refiner": {"mode": "img2img", "steps": 3, "strength": 0.3}},
            "refiner.strength",
            "refiner.strength at least 0.3333",
        ),
        ({"stages": [{"type": "refine", "steps": 49, "strength": 0.02}]}, "stages.0.strength", "at least 0.02041"),
    ],
)
def test_a_stage_without_a_step_is_refused_naming_the_field(
    tiny_server: str, body: dict[str, Any], field: str, advice: str
) -> None:
    response = httpx.post(tiny_server + "/v1/jobs", json={**SMALL, **body})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert advice in error["message"]


@pytest.mark.parametrize(
    "params",
    [
        GenerationParams(prompt="a", seed=1, width=64, height=64, steps=5, scheduler="heun", switch_at=0.8),
        GenerationParams(prompt="a", seed=1, width=64, height=64, steps=30, switch_at=0.8),
        GenerationParams(
            prompt="a", seed=1, width=64, height=64, steps=7, scheduler="heun", refiner_mode="img2img", refiner_steps=9
        ),
        GenerationParams(prompt="a", seed=1, width=64, height=64, steps=6, scheduler="dpmpp_2m_karras"),
    ],
)
def test_progress_totals_are_the_steps_the_engine_reports(
    generator: TwoStageGenerator, params: GenerationParams
) -> None:
    calls: list[str] = []
    generator.generate(params, on_step=lambda stage, step, total: calls.append(stage))
    assert len(calls) == denoising_steps(params)


def test_stage_totals_count_heun_steps_twice() -> None:
    params = GenerationParams(prompt="a", seed=1, steps=10, scheduler="heun", refiner_mode="none")
    # 10 Heun steps are 19 loop iterations; a refine pass keeping 3 of 10 steps is 5.
    assert denoising_steps(params, [RefineStage(type="refine", steps=10, strength=0.3)]) == 19 + 5
