"""A schedule that leaves a stage no step is refused with the ways out, in the caller's own field names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from cofounder_agent.contract.errors import InvalidField
from cofounder_agent.contract.fields import FIELDS, Caller
from cofounder_agent.contract.params import GenerationParams
from cofounder_agent.contract.schedule import ensemble_split, img2img_runs
from cofounder_agent.jobs.resolve import resolve_recipe
from cofounder_agent.schemas.jobs import JobCreate, RefinerSpec
from conftest import make_settings

ONE_STEP = JobCreate(prompt="x", steps=1, refiner=RefinerSpec(mode="ensemble", switch_at=0.8))
SHORT_IMG2IMG = JobCreate(prompt="x", steps=3, refiner=RefinerSpec(mode="img2img", steps=2, strength=0.3))

# caller: (the field named, what the message must say) for one step at switch_at 0.8.
ONE_STEP_ADVICE: dict[Caller, tuple[str, list[str]]] = {
    "job": ("steps", ["steps at least 2", 'refiner.mode: "none"', "no refiner.switch_at works with 1 steps"]),
    "seed": ("num_inference_steps", ["num_inference_steps at least 2", 'refiner_mode: "none"', "no switch_at works"]),
    "cli": ("--steps", ["--steps at least 2", "--refiner-mode none", "no --switch-at works with 1 steps"]),
    "openai": ("size", ["ask its operator"]),
    "a1111": ("steps", ["steps at least 2", "no refiner_switch_at works with 1 steps"]),
}
IMG2IMG_ADVICE: dict[Caller, list[str]] = {
    "job": ["refiner.strength at least 0.5", "refiner.steps at least 4", 'refiner.mode: "none"'],
    "seed": ["refiner_strength at least 0.5", "refiner_steps at least 4", 'refiner_mode: "none"'],
    "cli": ["--refine-strength at least 0.5", "--refine-steps at least 4", "--refiner-mode none"],
}
# Names of another caller that must not leak into a caller's message.
FOREIGN = {"job": "num_inference_steps", "seed": "refiner.", "cli": "refiner.", "a1111": "refiner."}


def _refused(recipe: JobCreate, caller: Caller, tmp_path: Path) -> InvalidField:
    with pytest.raises(InvalidField) as refused:
        resolve_recipe(recipe, make_settings(tmp_path), FIELDS[caller])
    return refused.value


@pytest.mark.parametrize("caller", list(ONE_STEP_ADVICE))
def test_one_step_names_the_callers_fields(caller: Caller, tmp_path: Path) -> None:
    error = _refused(ONE_STEP, caller, tmp_path)
    field, advice = ONE_STEP_ADVICE[caller]
    assert error.field == field
    assert all(part in error.reason for part in advice), error.reason
    assert caller not in FOREIGN or FOREIGN[caller] not in error.reason, error.reason


@pytest.mark.parametrize("caller", list(IMG2IMG_ADVICE))
def test_a_short_img2img_pass_names_the_callers_fields(caller: Caller, tmp_path: Path) -> None:
    error = _refused(SHORT_IMG2IMG, caller, tmp_path)
    assert error.field == FIELDS[caller]["refiner_strength"]
    assert all(part in error.reason for part in IMG2IMG_ADVICE[caller]), error.reason


@pytest.mark.parametrize("scheduler", ["euler", "heun", "dpmpp_2m_karras"])
@pytest.mark.parametrize(("steps", "switch_at"), [(1, 0.8), (3, 0.05), (5, 0.9999), (2, 0.5), (20, 0.02)])
def test_the_advised_values_run(steps: int, switch_at: float, scheduler: Any) -> None:
    """Each advised way out, taken alone, gives both UNets a step (and the bound is tight)."""
    params = GenerationParams(prompt="x", seed=0, steps=steps, switch_at=switch_at, scheduler=scheduler)
    problem = params.schedule_problem(FIELDS["job"])
    if problem is None:
        assert min(ensemble_split(steps, switch_at, scheduler)) >= 1
        return
    message = problem[1]
    if "steps at least " in message:
        fewest = int(message.split("steps at least ")[1].split(",")[0].split(" ")[0])
        assert min(ensemble_split(fewest, switch_at, scheduler)) >= 1
        assert min(ensemble_split(fewest - 1, switch_at, scheduler)) < 1
    if "between " in message:
        low, high = (float(v) for v in message.split("between ")[1].split(",")[0].split(" and "))
        for value in (low, high):
            assert min(ensemble_split(steps, value, scheduler)) >= 1
        for value in (round(low - 0.01, 2), round(high + 0.01, 2)):
            assert not 0 < value < 1 or min(ensemble_split(steps, value, scheduler)) < 1


def test_the_advised_img2img_values_run() -> None:
    params = GenerationParams(prompt="x", seed=0, refiner_mode="img2img", refiner_steps=7, refiner_strength=0.1)
    problem = params.schedule_problem(FIELDS["job"])
    assert problem is not None and "refiner.steps at least 10" in problem[1]
    assert img2img_runs(10, 0.1) and not img2img_runs(9, 0.1)


# The same over HTTP, on each endpoint that takes step or refiner options.
HTTP_CASES = [
    ("/v1/jobs", {"prompt": "x", "steps": 1}, "steps", "steps at least 2"),
    (
        "/v1/jobs",
        {"prompt": "x", "steps": 3, "refiner": {"mode": "img2img", "steps": 2}},
        "refiner.strength",
        'refiner.steps at least 4, or refiner.mode: "none"',
    ),
    (
        "/api/media/generate-image",
        {"prompt": "x", "use_generation": True, "use_pexels": False, "num_inference_steps": 20, "switch_at": 0.02},
        "switch_at",
        'switch_at between 0.05 and 0.99, or refiner_mode: "none"',
    ),
    ("/sdapi/v1/txt2img", {"prompt": "x", "steps": 1, "width": 64, "height": 64}, "steps", "steps at least 2"),
]


@pytest.mark.parametrize(("path", "body", "field", "advice"), HTTP_CASES)
def test_each_endpoint_answers_in_its_own_names(
    tiny_server: str, path: str, body: dict[str, Any], field: str, advice: str
) -> None:
    response = httpx.post(tiny_server + path, json=body, timeout=60)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and advice in error["message"], error
