"""Logging: text or JSON lines, to stderr and optionally a rotating file, tagged with the job id."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import logging.handlers
from collections.abc import Iterator
from pathlib import Path

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(job)s: %(message)s"
_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Tag every log record made inside (on this task, and on threads it hands work to) with the job id."""
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


class _JobFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        job_id = _job_id.get()
        record.job_id = job_id
        record.job = f" [job {job_id}]" if job_id else ""
        return True


# Health probes poll every few seconds: at INFO their access lines would bury what an operator
# needs. Readiness changes are logged where they happen (the worker's "ready", a failed load),
# so the probes' own lines show at DEBUG only.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class _QuietProbes(logging.Filter):
    """Drop uvicorn's access line for a probe unless DEBUG is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn.access logs '%s - "%s %s HTTP/%s" %d' with (client, method, path, version, status).
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and str(args[2]).partition("?")[0] in PROBE_PATHS:
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def json_formatter() -> logging.Formatter:
    """One JSON object a line; a record's ``extra`` fields (an image's seed, timings) become keys."""
    # "job" is the text format's " [job <id>]" prefix; JSON has job_id.
    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(job_id)s", reserved_attrs=[*RESERVED_ATTRS, "job"]
    )


def configure_logging(level: str = "INFO", log_file: Path | None = None, fmt: str = "text") -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(log_file, maxBytes=10_000_000, backupCount=3))
    formatter = json_formatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_JobFilter())
    logging.basicConfig(level=level.upper(), handlers=handlers, force=True)
    # diffusers/transformers are chatty at INFO (progress bars, config notes), and alembic says
    # "Context impl SQLiteImpl" at every start (migrations log their own one-line summary):
    # keep their warnings only.
    for noisy in ("diffusers", "transformers", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _QuietProbes) for f in access.filters):
        access.addFilter(_QuietProbes())
