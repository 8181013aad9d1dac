"""The container files keep their promises: GPU, volumes, non-root, 0.0.0.0, /healthz probe."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_dockerfile_runs_non_root_on_all_interfaces_with_a_healthcheck() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    assert lines[0].startswith("#") or any(line.startswith("FROM nvidia/cuda:") for line in lines)
    user = [line for line in lines if line.startswith("USER ")]
    assert user and user[-1] not in ("USER root", "USER 0")
    assert any("/healthz" in line for line in lines if "CMD" in line or line.startswith("HEALTHCHECK"))
    cmd = [line for line in lines if line.startswith("CMD [")][-1]
    assert '"serve"' in cmd and '"0.0.0.0"' in cmd


def test_compose_reserves_a_gpu_and_keeps_data_and_hf_cache_on_volumes() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["image-service"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    targets = {volume.split(":")[1] for volume in service["volumes"]}
    assert {"/data", "/hf-cache"} <= targets
    assert set(compose["volumes"]) == {volume.split(":")[0] for volume in service["volumes"]}


def test_torch_and_torchvision_are_pinned_together() -> None:
    # torchvision must match torch's build exactly, or spandrel's import of it fails.
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    assert {"torch==2.14.1", "torchvision==0.29.1", "spandrel==0.4.2"} <= set(pins)
