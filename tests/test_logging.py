"""Logs an operator reads: probe polls stay out of them at INFO, everything else stays in."""

from __future__ import annotations

import logging

import pytest

from cofounder_agent.logging_setup import configure_logging


def _access(path: str, status: int) -> None:
    # What uvicorn's access logger emits for one request.
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", status)


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_probe_polls_are_logged_at_debug_only(level: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level)
    try:
        for path, status in (("/readyz", 503), ("/healthz", 200), ("/metrics?x=1", 200), ("/v1/jobs", 202)):
            _access(path, status)
        err = capsys.readouterr().err
        assert '"GET /v1/jobs HTTP/1.1" 202' in err
        probes = ["/readyz", "/healthz", "/metrics?x=1"]
        assert all((f"GET {path} " in err) == (level == "DEBUG") for path in probes), err
    finally:
        configure_logging("INFO")
