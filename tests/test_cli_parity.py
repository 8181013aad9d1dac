"""`generate` (in-process) and `submit` / POST /v1/jobs (a server) agree: flags, defaults, pictures, progress."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from cofounder_agent import cli
from cofounder_agent.cli_flags import RECIPE_FLAGS
from cofounder_agent.cli_generate import generate
from cofounder_agent.cli_progress import ProgressBar
from cofounder_agent.schemas.jobs import JobCreate, RecipeTemplate
from conftest import LIMIT_S, make_settings, pixels, running_server, wait_job, wait_ready

CLI = [sys.executable, "-m", "cofounder_agent"]
GENERATE_ONLY = {"-o", "--output-dir"}
SUBMIT_ONLY = {"--server", "--api-key", "--priority", "--board", "--wait", "-o", "--output-dir"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(make_settings(tmp_path_factory.mktemp("parity"))) as url:
        wait_ready(url)
        yield url


def _run(*args: str, data: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, on the tiny model, with none of this machine's settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_", "PEXELS_", "COFOUNDER_"))}
    env = {**clean, "IMAGE_MODEL": "tiny", "IMAGE_DATA_DIR": str(data), "IMAGE_LOG_FILE": "", **env}
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=LIMIT_S)


def _generated(run: subprocess.CompletedProcess[str]) -> list[Path]:
    assert run.returncode == 0, run.stderr[-2000:]
    return [Path(json.loads(line)["path"]) for line in run.stdout.splitlines()]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_generate_draws_what_a_job_draws_with_the_default_steps_and_guidance(server: str, tmp_path: Path) -> None:
    # Only the size is given (small, to be quick): steps, guidance, scheduler and refiner are the defaults.
    small = ["--seed", "11", "--width", "64", "--height", "64"]
    run = _run("generate", "a red door", *small, "-o", str(tmp_path), data=tmp_path / "data")
    (path,) = _generated(run)
    assert "%|" not in run.stderr  # no progress bar: stderr is not a terminal
    with httpx.Client(base_url=server) as http:
        response = http.post("/v1/jobs", json={"prompt": "a red door", "seed": 11, "width": 64, "height": 64})
        assert response.status_code == 202, response.text
        job = wait_job(http, response.json()["id"])
        assert job["status"] == "succeeded", job["error"]
        served = pixels(http.get(f"/v1/images/{job['image_ids'][0]}").content)
    assert np.array_equal(pixels(path), served)
    with Image.open(path) as image:
        params = json.loads(image.info["cofounder-agent"])["params"]
    defaults = JobCreate.model_fields
    assert params["steps"] == job["recipe"]["steps"] == defaults["steps"].default
    assert params["guidance_scale"] == job["recipe"]["guidance_scale"] == defaults["guidance_scale"].default


@pytest.mark.slow
def test_generate_and_submit_draw_the_same_pictures_for_the_same_flags(server: str, tmp_path: Path) -> None:
    flags = ["--seed", "5", "--width", "64", "--height", "64", "--steps", "12", "--guidance", "5", "--num-images", "2"]
    flags += ["--scheduler", "dpmpp_2m", "--negative", "blurry"]
    flags += ["--refiner-mode", "img2img", "--refine-steps", "10", "--refine-strength", "0.5"]
    flags += ["--recipe", "progressive", "--upscale"]  # the recipe's stage, then the flag's
    local = _generated(_run("generate", "a blue boat", *flags, "-o", str(tmp_path / "local"), data=tmp_path / "data"))
    out = _run(
        "submit",
        "a blue boat",
        *flags,
        "--wait",
        "-o",
        str(tmp_path / "served"),
        data=tmp_path / "data",
        COFOUNDER_URL=server,
    )
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["status"] == "succeeded" and [r["seed"] for r in job["results"]] == [5, 6]
    assert [[s["spec"]["type"] for s in r["recipe_stages"]] for r in job["results"]] == [["progressive", "upscale"]] * 2
    served = [tmp_path / "served" / f"{image_id}.png" for image_id in job["image_ids"]]
    assert [json.loads(Image.open(p).info["cofounder-agent"])["params"]["seed"] for p in local] == [5, 6]
    for mine, theirs in zip(local, served, strict=True):
        assert pixels(mine).shape == (128, 128, 3)
        assert np.array_equal(pixels(mine), pixels(theirs))


def test_generate_and_submit_take_the_same_recipe_flags() -> None:
    parsers = _subparsers()
    helps = {name: parsers[name].format_help() for name in ("generate", "submit")}
    listed = {
        name: set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", text)) - {"-h", "--help"} for name, text in helps.items()
    }
    assert listed["generate"] - GENERATE_ONLY == listed["submit"] - SUBMIT_ONLY == set(RECIPE_FLAGS)
    for text in helps.values():  # the job API's defaults, read from JobCreate, not copied
        assert f"(default {JobCreate.model_fields['steps'].default})" in text
        assert f"(default {JobCreate.model_fields['guidance_scale'].default})" in text
        assert "--base-steps" not in text  # hidden: an alias for old scripts only


def test_base_steps_is_a_deprecated_alias_of_steps(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli._parser().parse_args(["generate", "x", "--base-steps", "12"])
    assert args.steps == 12
    assert "--base-steps is deprecated; use --steps" in capsys.readouterr().err


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal (of no known size, like some ptys)."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_the_bar_draws_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch, terminal: bool) -> None:
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    with ProgressBar() as bar:
        bar.show("base 3/40", 0.25)
        bar.show(None, 0.5)
    drawn = stderr.getvalue()
    if terminal:
        assert "base 3/40" in drawn and " 50%|" in drawn
    else:
        assert drawn == ""


def test_generate_shows_its_steps_on_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stderr, stdout = _Terminal(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(sys, "stdout", stdout)
    small = ["--seed", "1", "--width", "64", "--height", "64", "--steps", "10", "--num-images", "2"]
    args = cli._parser().parse_args(["generate", "a hill", *small, "-o", str(tmp_path / "out")])
    asyncio.run(generate(args, make_settings(tmp_path)))
    drawn = stderr.getvalue()
    lines: list[dict[str, Any]] = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert [line["seed"] for line in lines] == [1, 2]  # stdout keeps only the JSON lines
    assert "base 1/8" in drawn and "refiner 2/2" in drawn and "100%|" in drawn


async def test_both_clients_read_a_named_recipe(server: str) -> None:
    """What `submit` reads to keep a recipe's stages before the flags' own."""
    from cofounder_agent.client import AsyncClient, Client
    from cofounder_agent.jobs.recipe_book import BUILT_IN

    with Client(server) as sync:
        recipe = sync.recipe("progressive")
    assert recipe == RecipeTemplate.model_validate(BUILT_IN["progressive"])
    async with AsyncClient(server) as client:
        assert await client.recipe("progressive") == recipe
