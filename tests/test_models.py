"""Model sources: tiny, folders, the Hugging Face cache, and clear errors for the rest."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cofounder_agent.contract.params import LoadOptions
from cofounder_agent.engine.models import SDXL_BASE_ID, ModelSourceError, load_models, resolve_source, resolve_vae


def test_tiny_and_folder_sources(tiny_dirs: tuple[Path, Path]) -> None:
    assert resolve_source("tiny", SDXL_BASE_ID, False).kind == "tiny"
    source = resolve_source(str(tiny_dirs[0]), SDXL_BASE_ID, False)
    assert (source.kind, source.location) == ("dir", str(tiny_dirs[0].resolve()))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("./no/such/folder", "no such folder"),
        ("/tmp/missing-model.safetensors", "no such checkpoint file"),
        ("/tmp/model.ckpt", "only .safetensors"),
        ("someone/not-cached-model", "IMAGE_ALLOW_DOWNLOAD"),
    ],
)
def test_bad_sources_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ModelSourceError, match=re.escape(message)):
        resolve_source(spec, SDXL_BASE_ID, allow_download=False)


def test_folder_without_model_index_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match=r"model_index\.json"):
        resolve_source(str(tmp_path), SDXL_BASE_ID, False)


def test_tiny_refiner_needs_tiny_base(tiny_dirs: tuple[Path, Path]) -> None:
    with pytest.raises(ModelSourceError, match="tiny refiner"):
        load_models(LoadOptions(model=str(tiny_dirs[0]), refiner_model="tiny"))


def test_folder_load_shares_refiner_parts(tiny_dirs: tuple[Path, Path]) -> None:
    models = load_models(LoadOptions(model=str(tiny_dirs[0]), refiner_model=str(tiny_dirs[1])))
    assert models.base_source.kind == "dir" and not models.is_tiny
    assert models.refiner is not None
    assert models.refiner.text_encoder_2 is models.base.text_encoder_2
    assert models.refiner.vae is models.base.vae
    assert models.precision == "fp32" and models.device.device == "cpu"


def test_vae_from_a_folder_is_used_and_kept_in_its_precision(tmp_path: Path) -> None:
    from cofounder_agent.engine.tiny import build_tiny

    build_tiny(seed=5).base.vae.save_pretrained(tmp_path / "vae", safe_serialization=True)
    models = load_models(LoadOptions(model="tiny", vae=str(tmp_path / "vae"), precision="fp16"))
    # A configured (fp16-fixed) VAE is not upcast, and both pipelines share it.
    assert models.vae_dtype == "float16" and models.refiner is not None
    assert models.refiner.vae is models.base.vae
    reference = build_tiny(seed=5).base.vae.state_dict()
    loaded = models.base.vae.state_dict()
    assert all(torch.equal(reference[k].half(), loaded[k]) for k in reference)


def test_vae_source_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match=r"no config\.json"):
        resolve_vae(str(tmp_path), allow_download=False)
    with pytest.raises(ModelSourceError, match="IMAGE_ALLOW_DOWNLOAD"):
        resolve_vae("madebyollin/sdxl-vae-fp16-fix", allow_download=False)


def test_refiner_none_loads_base_only() -> None:
    models = load_models(LoadOptions(model="tiny", refiner_model="none"))
    assert models.refiner is None


def _fake_hub_cache(root: Path, repo_id: str, folder: Path) -> None:
    """Lay a model out the way huggingface_hub caches a download."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def _load_in_subprocess(cache: Path, model: str, refiner: str) -> dict[str, str]:
    code = (
        "import json; from cofounder_agent.engine.models import load_models;"
        "from cofounder_agent.contract.params import LoadOptions;"
        f"m = load_models(LoadOptions(model={model!r}, refiner_model={refiner!r}));"
        "print(json.dumps({'base': m.base_source.kind + ':' + m.base_source.location,"
        " 'refiner': m.refiner_source.kind + ':' + m.refiner_source.location}))"
    )
    # HF_HUB_OFFLINE too: if anything tried the network, loading would fail instead of hanging.
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, str] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_auto_uses_sdxl_from_the_hf_cache_else_tiny(tiny_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    assert _load_in_subprocess(empty, "auto", "auto") == {"base": "tiny:tiny", "refiner": "tiny:tiny"}

    cache = tmp_path / "cache"
    _fake_hub_cache(cache, SDXL_BASE_ID, tiny_dirs[0])
    _fake_hub_cache(cache, "stabilityai/stable-diffusion-xl-refiner-1.0", tiny_dirs[1])
    loaded = _load_in_subprocess(cache, "auto", "auto")
    assert loaded == {
        "base": f"hub:{SDXL_BASE_ID}",
        "refiner": "hub:stabilityai/stable-diffusion-xl-refiner-1.0",
    }

    # A cache entry without weights (an interrupted download): auto serves the tiny model.
    broken = tmp_path / "broken-cache"
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "model_index.json").write_text((tiny_dirs[0] / "model_index.json").read_text())
    _fake_hub_cache(broken, SDXL_BASE_ID, partial)
    assert _load_in_subprocess(broken, "auto", "auto") == {"base": "tiny:tiny", "refiner": "tiny:tiny"}
