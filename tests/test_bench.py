"""`cofounder-agent bench`: the engine and service suites run end to end and print their figures.

Not timed tests: they check the suites work and report what they claim (ratios, errors,
the machine), at toy sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "cofounder_agent", "bench"]


def _bench(*args: str, tmp_path: Path) -> tuple[str, dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_", "PEXELS_"))}
    out = tmp_path / "bench.json"
    run = subprocess.run([*CLI, *args, "--json", str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout, json.loads(out.read_text())


@pytest.mark.slow
def test_engine_suite_compares_with_diffusers(tmp_path: Path) -> None:
    stdout, report = _bench(
        "--suite", "engine", "--engine-size", "64", "--engine-steps", "10", "--engine-runs", "2", tmp_path=tmp_path
    )
    assert "median ratio (ours / diffusers)" in stdout
    summary = report["summary"]
    assert isinstance(summary, dict) and summary["max pixel difference (0-255)"] == 0  # the same picture
    assert summary["median ratio (ours / diffusers)"] > 0
    machine = report["machine"]
    assert isinstance(machine, dict) and machine["cores"] and machine["torch"] and "gpu" in machine


@pytest.mark.slow
def test_service_suite_reports_throughput_latency_and_errors(tmp_path: Path) -> None:
    stdout, report = _bench(
        "--suite", "service", "--service-clients", "1,2", "--service-jobs", "4", "--service-size", "64",
        "--service-batch-max", "2", tmp_path=tmp_path,
    )  # fmt: skip
    rows = report["rows"]
    assert isinstance(rows, list)
    served = [row for row in rows if row["path"] == "HTTP + queue"]
    assert [(row["clients"], row["batching"]) for row in served] == [
        (1, "off"),
        (2, "off"),
        (1, "on (max 2)"),
        (2, "on (max 2)"),
    ]
    assert all(row["errors"] == 0 and row["jobs_per_s"] > 0 and row["p99_s"] >= row["p50_s"] for row in served)
    assert "overhead (engine jobs/s / service jobs/s, 1 client; median of rounds)" in stdout
    assert "vs_off" in served[-1]


@pytest.mark.slow
def test_scale_suite_compares_one_and_two_workers_and_the_two_paths(tmp_path: Path) -> None:
    stdout, report = _bench(
        "--suite", "scale", "--scale-jobs", "2", "--scale-steps", "2", "--scale-size", "64",
        "--scale-rounds", "1", "--scale-runs", "1", tmp_path=tmp_path,
    )  # fmt: skip
    assert "jobs/s, 2 workers / 1 worker (median of per-round ratios)" in stdout
    assert "latency, distributed / embedded (median of per-round ratios)" in stdout
    assert f"this host has {os.cpu_count()} CPU cores" in stdout
    summary = report["summary"]
    assert isinstance(summary, dict)
    assert summary["jobs/s, 2 workers / 1 worker (median of per-round ratios)"] > 0
    assert summary["latency, distributed / embedded (median of per-round ratios)"] > 0
    rows = report["rows"]
    assert isinstance(rows, list)
    assert [(row["measure"], row["path"]) for row in rows] == [
        ("throughput", "1 worker"),
        ("throughput", "2 workers"),
        ("latency, 64x64", "distributed"),
        ("latency, 64x64", "embedded"),
    ]
    assert rows[0]["workers_used"] == "1"  # the paused worker ran nothing
