"""Logs an operator reads: probe polls stay out of them at INFO, everything else stays in."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from cofounder_agent.logging_setup import configure_logging


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _access(path: str, status: int) -> None:
    # What uvicorn's access logger emits for one request.
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", status)


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_probe_polls_are_logged_at_debug_only(level: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # An in-process uvicorn run earlier in the session leaves uvicorn.access with its own
    # handler, propagate=False and its level at WARNING; give the logger just a recorder at
    # INFO so the result does not depend on which tests ran before. The filter under test
    # sits on the logger itself.
    access = logging.getLogger("uvicorn.access")
    recorder = _Recorder()
    monkeypatch.setattr(access, "handlers", [recorder])
    monkeypatch.setattr(access, "propagate", False)
    previous_level = access.level
    access.setLevel(logging.INFO)
    configure_logging(level)
    try:
        for path, status in (("/readyz", 503), ("/healthz", 200), ("/metrics?x=1", 200), ("/v1/jobs", 202)):
            _access(path, status)
        text = "\n".join(recorder.lines)
        assert '"GET /v1/jobs HTTP/1.1" 202' in text
        probes = ["/readyz", "/healthz", "/metrics?x=1"]
        assert all((f"GET {path} " in text) == (level == "DEBUG") for path in probes), text
    finally:
        configure_logging("INFO")
        access.setLevel(previous_level)


# The service's start, as `serve` and `generate` do it: logging first, then the model load.
# torchvision is hidden (sys.modules[...] = None makes find_spec and import fail), as on a host
# without it, where transformers notes its PIL fallbacks. The "keep" run removes the filter to
# show the note would be there without it.
_LOAD = """
import sys
sys.modules["torchvision"] = None
from cofounder_agent.logging_setup import configure_logging
configure_logging("INFO")
import cofounder_agent.engine, logging
if sys.argv[1] == "keep":
    logging.getLogger("transformers.utils.import_utils").filters.clear()
from cofounder_agent.contract.params import LoadOptions
from cofounder_agent.engine.models import load_models
load_models(LoadOptions(model="tiny"))
logging.getLogger("transformers.utils.import_utils").warning("another transformers warning")
"""


@pytest.mark.parametrize("filtered", [True, False])
def test_model_load_has_no_torchvision_notes(filtered: bool) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-c", _LOAD, "drop" if filtered else "keep"]
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert ("requires torchvision" in out.stderr) == (not filtered), out.stderr
    assert "another transformers warning" in out.stderr  # only that note is dropped
