"""The GPU tier: model loading and generation (torch and diffusers live here, never in the web tier)."""

from __future__ import annotations

import logging

# Without torchvision, transformers swaps its image processors (CLIP's, SigLIP's) for their PIL
# twins and warns once each at start: "`CLIPImageProcessor` requires torchvision (not
# installed); falling back to ...". diffusers' SDXL pipelines only name those classes, and
# text-to-image never runs them, so the notes tell an operator nothing. Drop exactly that note,
# on the logger that emits it, before anything imports diffusers; every other warning stays.
_PIL_FALLBACK_NOTE = "requires torchvision (not installed); falling back to"


class _NoPilFallbackNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _PIL_FALLBACK_NOTE not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_NoPilFallbackNote())
