"""Probes: liveness (process up) and readiness (models loaded here, or on a live worker)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from cofounder_agent.deps import FleetDep
from cofounder_agent.errors import AppError
from cofounder_agent.schemas import ErrorBody

router = APIRouter(tags=["health"])


class Probe(BaseModel):
    status: str


@router.get("/healthz")
async def healthz() -> Probe:
    """Answer while the process serves requests, even before the models are loaded."""
    return Probe(status="ok")


@router.get(
    "/readyz",
    responses={503: {"model": ErrorBody, "description": "Models loading or failed; on a replica: no worker ready"}},
)
async def readyz(fleet: FleetDep) -> Probe:
    """Answer 200 once the models are loaded, 503 while loading or after a failed load.

    An API replica (`serve --no-worker`) is ready once at least one live worker is.
    """
    s = await fleet.status()
    if s.state != "ready":
        if fleet.embedded:
            message = f"image model is {s.state}" + (f": {s.error}" if s.error else "")
        else:
            message = s.error or "no worker is ready"
        raise AppError(503, "not_ready", message, retry_after=5)
    return Probe(status="ready")
