"""What is written into a generated image's PNG and sidecar: enough to reproduce it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from cofounder_agent.contract.params import GenerationResult
from cofounder_agent.services.image_service import EngineStatus


def generation_metadata(result: GenerationResult, status: EngineStatus) -> dict[str, Any]:
    return {
        "source": "tiny" if status.is_tiny else "sdxl",
        "params": asdict(result.params),
        "model": status.base_model,
        "refiner_model": status.refiner_model,
        "tiny_model": status.is_tiny,
        "precision": status.precision,
        "device": status.device,
        "refiner_applied": result.refiner_applied,
        "refiner_fallback_reason": result.refiner_fallback_reason,
        "batch_size": result.batch_size,  # > 1: generated in one batch with others (timings are the batch's)
        "stages": [asdict(stage) for stage in result.stages],
    }
