"""Log to stderr and, when configured, to a rotating file (logs/ by default)."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO", log_file: Path | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(log_file, maxBytes=10_000_000, backupCount=3))
    logging.basicConfig(level=level.upper(), format=FORMAT, handlers=handlers, force=True)
    # diffusers/transformers are chatty at INFO (progress bars, config notes): keep their warnings only.
    for noisy in ("diffusers", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
