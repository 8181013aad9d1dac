"""Seed-compatible endpoints: generate a featured image, and the media health check."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from cofounder_agent.deps import FeaturedImageDep, FleetDep, PexelsDep, disconnect_of
from cofounder_agent.errors import KEY_REUSED
from cofounder_agent.jobs.attend import Caller
from cofounder_agent.jobs.service import fingerprint
from cofounder_agent.schemas import ErrorBody, ImageGenerationRequest, ImageGenerationResponse, MediaHealth
from cofounder_agent.schemas.media import WorkerPublic

router = APIRouter(prefix="/api/media", tags=["media"])


@router.post(
    "/generate-image",
    responses={
        422: {"model": ErrorBody, "description": KEY_REUSED},
        429: {"model": ErrorBody},
        503: {"model": ErrorBody},
        502: {"model": ErrorBody},
    },
)
async def generate_image(
    body: ImageGenerationRequest,
    request: Request,
    featured: FeaturedImageDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> ImageGenerationResponse:
    """Generate the image with SDXL, or find a Pexels stock photo; wait for the result.

    A client that leaves before the image is done cancels its generation, unless it sent an
    ``Idempotency-Key``: then the job goes on and the same key later fetches its result.
    """

    def url_for(image_id: str) -> str:
        return str(request.url_for("get_image", image_id=image_id))

    # The job recipe holds a drawn seed (a new one each time): the key is compared by the body.
    request_hash = fingerprint(body.model_dump(mode="json")) if idempotency_key else None
    caller = Caller(disconnect_of(request.receive), idempotency_key, request_hash)
    return await featured.produce(body, url_for, caller)


@router.get("/health")
async def media_health(fleet: FleetDep, pexels: PexelsDep) -> MediaHealth:
    """Report which sources work, what the engine runs on and the live workers.

    The engine fields are this process's engine's; on an API replica, a ready worker's.
    """
    s, live = await fleet.status(), await fleet.workers()
    return MediaHealth(
        status="ok" if s.state == "ready" and not s.is_tiny else "degraded",
        sdxl_ok=s.state == "ready" and not s.is_tiny,
        generation_ok=s.state == "ready",
        pexels_ok=pexels.configured,
        model_state=s.state,
        model=s.base_model,
        refiner_model=s.refiner_model,
        tiny_model=s.is_tiny,
        model_note=(
            "built-in tiny model with random weights: not SDXL" + (f" ({s.note})" if s.note else "")
            if s.is_tiny
            else s.note
        ),
        load_error=s.error,
        device=s.device,
        device_name=s.device_name,
        vram_gb=s.vram_gb,
        precision=s.precision,
        vae_dtype=s.vae_dtype,
        fast_path=list(s.fast_path),
        workers=[
            WorkerPublic(
                id=w.id,
                host=w.host,
                pid=w.pid,
                device=w.device,
                model=w.model,
                precision=w.precision,
                ready=w.ready,
                state=w.engine.state,
                current_job_ids=w.current_job_ids,
                heartbeat_age_s=w.heartbeat_age_s,
                same_image_dir=fleet.same_image_dir(w),
            )
            for w in live
        ],
    )
