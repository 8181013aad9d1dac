"""An empty IMAGE_API_KEY is an error, never a quiet "no auth"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from cofounder_agent.config import Settings
from cofounder_agent.main import create_app

ROOT = Path(__file__).resolve().parents[1]
REASON = "IMAGE_API_KEY is set but empty: set a key, or unset the variable to run without auth"


@pytest.mark.parametrize("value", ["", "   ", SecretStr("")])
def test_an_empty_key_is_refused_saying_why(value: object) -> None:
    with pytest.raises(ValidationError, match=REASON):
        Settings(_env_file=None, image_api_key=value)  # type: ignore[call-arg]


def test_an_empty_key_in_the_environment_stops_create_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the machine running the tests
    monkeypatch.setenv("IMAGE_API_KEY", "")
    with pytest.raises(ValidationError, match=REASON):
        create_app()


def test_an_unset_key_means_no_auth_and_a_set_one_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGE_API_KEY", raising=False)
    assert Settings(_env_file=None).image_api_key is None  # type: ignore[call-arg]
    monkeypatch.setenv("IMAGE_API_KEY", "s3cret")
    key = Settings(_env_file=None).image_api_key  # type: ignore[call-arg]
    assert key is not None and key.get_secret_value() == "s3cret"


def test_serve_with_an_empty_key_exits_with_the_reason_not_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_", "PEXELS_"))}
    env |= {"IMAGE_API_KEY": "", "IMAGE_DATA_DIR": str(tmp_path / "data"), "IMAGE_LOG_FILE": ""}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    serve = [sys.executable, "-m", "cofounder_agent", "serve", "--port", "1"]
    done = subprocess.run(serve, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert done.stderr.strip() == f"error: {REASON}"
    assert not (tmp_path / "data").exists()  # stopped before starting anything
