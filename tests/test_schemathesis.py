"""The API keeps its own contract: schemathesis, all checks, over a live server's OpenAPI document.

Schemathesis (the CLI, as a subprocess, for its phases and its report) reads /openapi.json
of a real server (tiny model, an isolated data dir, Pexels stood in for) and runs every
check it has: no 5xx; status codes, content types, headers and bodies as documented;
schema-valid requests accepted and invalid ones refused; the Allow header of 405s;
resources gone after DELETE and present after creation (stateful phase); missing required
headers; undeclared methods. Any failure fails the test with schemathesis' report.

Bounds, so the run takes a few minutes on two cores: a fixed number of examples per
operation and phase (``generation.deterministic``: the same cases every run), and
tests/schemathesis_hooks.py, which keeps generated jobs tiny (64 px, a few steps, one image)
and positive cases clear of the cross-field rules a JSON Schema cannot state (its docstring
lists them). The synchronous generation endpoints are covered like the others: with those
bounds each of their requests waits moments.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import make_settings, running_server, wait_ready
from pexels_fakes import API_KEY, FakePexels

HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
CONFIG = """
max-stream-events = 8
request-timeout = 300
workers = 1
[generation]
deterministic = true
max-examples = 5
# Every check (a --checks on the command line would override the per-operation entry below).
[checks]
enabled = true
max_response_time = 300
[phases.stateful]
max-steps = 6
[phases.stateful.generation]
max-examples = 3
# Multipart uploads: the coverage phase sends bytes no picture decoder reads and a null
# board_id as the text "null" (a form has no null), and calls both valid. Valid uploads are
# accepted in tests/test_boards_images.py; every other check still runs on this operation.
[[operations]]
include-path = "/v1/images"
include-method = "POST"
checks.positive_data_acceptance.enabled = false
"""


def test_api_conforms_to_its_openapi_document(tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    settings = make_settings(tmp_path, pexels_api_key=API_KEY)
    with running_server(settings, FakePexels().transport()) as url:
        wait_ready(url)
        command = [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()"]
        args = ["--config-file", str(config), "--no-color", "run", f"{url}/openapi.json"]
        env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
        run = subprocess.run(
            [*command, *args, "--report", "junit", "--report-dir", str(tmp_path / "report")],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
