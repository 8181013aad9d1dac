"""Probes: liveness (process up) and readiness (models loaded)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from cofounder_agent.deps import ImageServiceDep
from cofounder_agent.errors import AppError
from cofounder_agent.schemas import ErrorBody

router = APIRouter(tags=["health"])


class Probe(BaseModel):
    status: str


@router.get("/healthz")
async def healthz() -> Probe:
    """Answer while the process serves requests, even before the models are loaded."""
    return Probe(status="ok")


@router.get("/readyz", responses={503: {"model": ErrorBody, "description": "Models loading, or their load failed"}})
async def readyz(images: ImageServiceDep) -> Probe:
    """Answer 200 once the models are loaded, 503 while loading or after a failed load."""
    s = images.status
    if s.state != "ready":
        detail = f": {s.error}" if s.error else ""
        raise AppError(503, "not_ready", f"image model is {s.state}{detail}", retry_after=5)
    return Probe(status="ready")
