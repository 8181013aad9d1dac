"""The container files and the wheel keep their promises: GPU, volumes, non-root, 0.0.0.0, probes, package data."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from cofounder_agent.config import Settings

ROOT = Path(__file__).resolve().parents[1]
# Settings the image fixes: the data volume, and logs to the container's stdout.
FIXED_BY_THE_IMAGE = {"IMAGE_DATA_DIR", "IMAGE_LOG_FILE"}


def _documented_settings() -> set[str]:
    """The variables README's configuration table names (first column)."""
    table = (ROOT / "README.md").read_text().split("| variable | default | meaning |", 1)[1].split("\n\n", 1)[0]
    names: set[str] = set()
    for row in table.splitlines()[2:]:
        names |= set(re.findall(r"`((?:IMAGE|PEXELS)_[A-Z0-9_]+)`", row.split("|")[1]))
    return names


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
    named = {volume.split(":")[0] for each in compose["services"].values() for volume in each.get("volumes", [])}
    assert set(compose["volumes"]) == named


def test_compose_passes_every_documented_setting_and_requires_the_api_key() -> None:
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["image-service"]
    environment = service["environment"]
    documented = _documented_settings()
    assert {"IMAGE_MODEL", "IMAGE_API_KEY", "IMAGE_BATCH_WAIT_S", "PEXELS_API_KEY"} <= documented  # the table parsed
    assert sorted(documented - FIXED_BY_THE_IMAGE - set(environment)) == []
    assert {name.lower() for name in environment} <= set(Settings.model_fields)  # no typo passes a dead name
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert all(re.search(rf"\b{name}=", dockerfile) for name in FIXED_BY_THE_IMAGE)
    # Listening on all interfaces: `docker compose up` stops with a reason when the key is unset or empty.
    assert re.fullmatch(r"\$\{IMAGE_API_KEY:\?[^}]*IMAGE_API_KEY[^}]*\}", environment["IMAGE_API_KEY"])


def test_torch_and_torchvision_are_pinned_together() -> None:
    # torchvision must match torch's build exactly, or spandrel's import of it fails.
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    assert {"torch==2.14.1", "torchvision==0.29.1", "spandrel==0.4.2"} <= set(pins)


def test_the_scale_profile_runs_postgres_two_api_replicas_and_a_gpu_worker_with_healthchecks() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    scale = {name for name, service in services.items() if "scale" in service.get("profiles", [])}
    assert scale == {"postgres", "api-1", "api-2", "worker-0"}
    assert "profiles" not in services["image-service"]  # `docker compose up -d` still starts it alone
    apis, worker = [services["api-1"], services["api-2"]], services["worker-0"]
    for api in apis:
        assert api["command"][1:3] == ["serve", "--no-worker"]
        assert api["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert len({api["ports"][0].split(":")[0] for api in apis}) == 2
    assert worker["command"][1] == "worker"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}]  # one GPU per worker
    assert {"test", "interval"} <= set(worker["healthcheck"]) and {"test"} <= set(services["postgres"]["healthcheck"])
    # Every process of the profile on one database and one image directory.
    urls = {service["environment"]["IMAGE_DATABASE_URL"] for service in (*apis, worker)}
    assert len(urls) == 1 and urls.pop().startswith("postgresql+asyncpg://")
    assert all("image-data:/data" in service["volumes"] for service in (*apis, worker))
    # The settings every process takes, passed through as for the single service.
    for service in (*apis, worker):
        assert set(services["image-service"]["environment"]) - {"IMAGE_DEVICE"} <= set(service["environment"])


def test_the_wheel_carries_the_package_data_docs_and_ui_included(tmp_path: Path) -> None:
    # Built from a copy, so that the build's egg-info and build/ stay out of the checkout.
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", "dist", "."]
    out = subprocess.run(build, cwd=tree, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = (tree / "dist").glob("cofounder_agent-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # /docs and /redoc's assets (scripts/vendor_swagger.sh): every vendored file, licenses too.
    docs = ROOT / "src/cofounder_agent/static/docs"
    vendored = {f"cofounder_agent/static/docs/{p.relative_to(docs)}" for p in docs.rglob("*") if p.is_file()}
    assert "cofounder_agent/static/docs/swagger-ui/swagger-ui-bundle.js" in vendored
    assert sorted(vendored - names) == []
    # The /ui page: every file of it.
    ui = ROOT / "src/cofounder_agent/static/ui"
    page = {f"cofounder_agent/static/ui/{p.relative_to(ui)}" for p in ui.rglob("*") if p.is_file()}
    assert "cofounder_agent/static/ui/index.html" in page
    assert sorted(page - names) == []
    assert {"cofounder_agent/py.typed", "cofounder_agent/migrations/script.py.mako"} <= names
