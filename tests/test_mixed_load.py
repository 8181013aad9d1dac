"""The mixed-load script's core: a few seconds of load on a spawned server, and its report."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from cofounder_agent.bench.load import LoadConfig, check_loopback, route_of, spawn_server
from cofounder_agent.bench.load_checks import render, run_load, timed_out_check

SCRIPT = Path(__file__).parents[1] / "scripts" / "mixed_load.py"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:1/", "http://[::1]:8000"])
def test_loopback_urls_are_accepted(url: str) -> None:
    assert check_loopback(url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000", "https://example.com", "http://127.0.0.1.example.com"])
def test_other_hosts_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        check_loopback(url)


def test_the_script_refuses_a_remote_url_before_sending_anything() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--url", "http://192.0.2.1:8000", "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "loopback" in run.stderr


def test_routes_fold_ids_and_keep_query_keys() -> None:
    job = "0123456789abcdef0123456789abcdef"
    assert route_of("GET", f"/v1/jobs/{job}") == "GET /v1/jobs/{id}"
    assert route_of("GET", "/v1/jobs?status=queued&limit=20") == "GET /v1/jobs?limit&status"


def test_a_small_job_timed_out_is_flagged_when_its_shape_runs_far_below_the_timeout() -> None:
    def job(job_id: str, status: str, size: int, **extra: object) -> dict[str, object]:
        recipe = {"width": size, "height": size, "steps": 4, "num_images": 1}
        return {"id": job_id, "status": status, "recipe": recipe, **extra}

    jobs = [
        job("a", "succeeded", 64, results=[{"timings": {"total_s": 0.4}}]),
        job("b", "failed", 64, error="timed out after 10 s", seconds=10.2),  # waited for another job
        job("c", "failed", 512, error="timed out after 10 s on the engine"),  # no reference: unknown
        job("d", "failed", 512, error="timed out after 10 s", engine_seconds=10.1),  # its own time ran out
        job("e", "failed", 512, error="timed out after 10 s", engine_seconds=0.3),  # its record says it didn't
    ]
    found = timed_out_check(jobs)
    assert len(found["timed_out"]) == 4
    assert [f["job_id"] for f in found["flagged"]] == ["b", "e"]
    assert [f["engine_from"] for f in found["flagged"]] == ["same-shape median", "job record"]
    assert found["unknown"] == 1


@pytest.mark.slow
def test_a_short_run_reports_every_check_and_no_server_errors(tmp_path: Path) -> None:
    config = LoadConfig(clients=3, duration_s=4.0, grace_s=120.0, large_size=128, large_steps=8, think_s=0.1)
    settings = {"IMAGE_JOB_TIMEOUT_S": "30", "IMAGE_MAX_QUEUE": "32"}
    with spawn_server(tmp_path, settings) as url:
        report = asyncio.run(run_load(url, config))
    assert set(report["checks"]) == {
        "responses_5xx",
        "failed_for_another_jobs_time",
        "orphan_images",
        "requests_in_flight_after",
        "jobs_not_terminal",
    }
    assert report["checks"]["responses_5xx"] == 0, report["details"]["server_errors"]
    assert report["checks"]["jobs_not_terminal"] == 0
    routes = {row["route"]: row for row in report["routes"]}
    assert "POST /v1/jobs" in routes and "POST /v1/boards" in routes  # boards are made before the clients start
    assert all(set(row) >= {"2xx", "4xx", "5xx", "left", "timeout", "error"} for row in routes.values())
    assert report["details"]["script_errors"] == []
    assert sum(report["jobs"].values()) >= 1
    text = render(report)
    assert "responses_5xx: 0 (must be 0) ok" in text and "RESULT:" in text
