"""Prometheus scrape endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from cofounder_agent.services.metrics import Metrics

router = APIRouter(tags=["health"])


# Prometheus' text exposition format (text/plain; version=0.0.4).
TEXT: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}
}


@router.get("/metrics", response_class=Response, responses=TEXT)
async def metrics(request: Request) -> Response:
    """Queue depth, jobs by status, stage and job latency histograms, per-worker gauges, GPU memory."""
    registry: Metrics = request.app.state.metrics
    return Response(await registry.render(), media_type=CONTENT_TYPE_LATEST)
