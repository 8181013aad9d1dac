"""The seed's generate-image flow: SDXL when asked and ready, else (or on failure) Pexels."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from cofounder_agent.config import Settings
from cofounder_agent.engine.params import MAX_SEED, GenerationParams, GenerationResult
from cofounder_agent.errors import AppError
from cofounder_agent.schemas import ImageGenerationRequest, ImageGenerationResponse, PexelsAttribution, RefinerInfo
from cofounder_agent.services.image_service import EngineStatus, ImageService
from cofounder_agent.services.pexels import Orientation, PexelsClient
from cofounder_agent.storage import ImageStore, UnsupportedImage

log = logging.getLogger(__name__)
UrlFor = Callable[[str], str]


def _invalid(field: str, message: str) -> AppError:
    return AppError(422, "invalid_request", f"{field}: {message}", field=field)


def to_params(body: ImageGenerationRequest, settings: Settings) -> GenerationParams:
    """Fill a request's gaps from the server defaults; draw a seed when none is given.

    Options that the chosen refiner mode would ignore are refused rather than dropped.
    """
    if not body.use_refinement and body.refiner_mode not in (None, "none"):
        raise _invalid("refiner_mode", "contradicts use_refinement=false")
    mode = body.refiner_mode or (settings.image_refiner_mode if body.use_refinement else "none")
    if mode != "ensemble" and body.switch_at is not None:
        raise _invalid("switch_at", f"only applies to refiner_mode=ensemble, not {mode}")
    for name in ("refiner_steps", "refiner_strength"):
        if mode != "img2img" and getattr(body, name) is not None:
            raise _invalid(name, f"only applies to refiner_mode=img2img, not {mode}")
    params = GenerationParams(
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        seed=body.seed if body.seed is not None else secrets.randbelow(MAX_SEED + 1),
        width=body.width,
        height=body.height,
        steps=body.base_steps,
        guidance_scale=body.guidance_scale,
        scheduler=body.scheduler or settings.image_scheduler,
        refiner_mode=mode,
        switch_at=body.switch_at if body.switch_at is not None else settings.image_switch_at,
        refiner_steps=body.refiner_steps if body.refiner_steps is not None else settings.image_refiner_steps,
        refiner_strength=(
            body.refiner_strength if body.refiner_strength is not None else settings.image_refiner_strength
        ),
    )
    problem = params.schedule_problem()
    if problem is not None:
        raise _invalid(*problem)
    return params


def generation_metadata(result: GenerationResult, status: EngineStatus) -> dict[str, Any]:
    """Everything needed to reproduce an image, stored in its PNG and sidecar."""
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
        "stages": [asdict(stage) for stage in result.stages],
    }


def _refiner_info(result: GenerationResult) -> RefinerInfo:
    p = result.params
    return RefinerInfo(
        mode=p.refiner_mode,
        applied=result.refiner_applied,
        fallback_reason=result.refiner_fallback_reason,
        switch_at=p.switch_at if p.refiner_mode == "ensemble" else None,
        steps=p.refiner_steps if p.refiner_mode == "img2img" else None,
        strength=p.refiner_strength if p.refiner_mode == "img2img" else None,
    )


def _orientation(width: int, height: int) -> Orientation:
    if width == height:
        return "square"
    return "landscape" if width > height else "portrait"


class FeaturedImageService:
    """Choose the source for one request and store what it produced."""

    def __init__(self, images: ImageService, pexels: PexelsClient, store: ImageStore, settings: Settings) -> None:
        self.images, self.pexels, self.store, self.settings = images, pexels, store, settings

    async def produce(self, body: ImageGenerationRequest, url_for: UrlFor) -> ImageGenerationResponse:
        """Serve ``body`` from SDXL or Pexels; ``url_for(image_id)`` makes the public URL."""
        generation_error: str | None = None
        if body.use_generation:
            params = to_params(body, self.settings)  # bad input is a 422, never a Pexels fallback
            if self.images.ready:
                try:
                    return await self._generate(params, url_for)
                except Exception as exc:  # e.g. CUDA OOM: fall back to Pexels when allowed
                    log.exception("generation failed")
                    # The details (paths, library internals) stay in the log.
                    generation_error = f"generation failed ({type(exc).__name__}); see the server log"
            else:
                status = self.images.status
                detail = f" ({status.error})" if status.error else ""
                generation_error = f"image model is {status.state}{detail}"

        if body.use_pexels and self.pexels.configured:
            return await self._stock_photo(body, url_for, generation_error)

        pexels_reason = "use_pexels is false" if not body.use_pexels else "PEXELS_API_KEY is not set"
        generation_error = generation_error or "use_generation is false"
        loading = body.use_generation and self.images.status.state == "loading"
        raise AppError(
            503,
            "no_image_source",
            f"no image source available: {generation_error}; Pexels not used: {pexels_reason}",
            retry_after=10 if loading else None,
        )

    async def _generate(self, params: GenerationParams, url_for: UrlFor) -> ImageGenerationResponse:
        result = await self.images.generate(params)
        status = self.images.status
        # PNG compression takes ~0.2 s at 1024²: off the event loop.
        stored = await asyncio.to_thread(self.store.save_png, result.image, generation_metadata(result, status))
        log.info("generated image %s seed=%s timings=%s", stored.id, params.seed, result.timings)
        return ImageGenerationResponse(
            source="tiny" if status.is_tiny else "sdxl",
            image_id=stored.id,
            image_url=url_for(stored.id),
            width=stored.width,
            height=stored.height,
            model=status.base_model,
            seed=params.seed,
            num_inference_steps=params.steps,
            guidance_scale=params.guidance_scale,
            scheduler=params.scheduler,
            refiner=_refiner_info(result),
            timings=result.timings,
        )

    async def _stock_photo(
        self, body: ImageGenerationRequest, url_for: UrlFor, generation_error: str | None
    ) -> ImageGenerationResponse:
        query = " ".join(body.keywords) if body.keywords else (body.title or body.prompt)
        found = await self.pexels.search(query[:200], orientation=_orientation(body.width, body.height), per_page=1)
        if not found.photos:
            raise AppError(404, "no_stock_photo", f"Pexels has no photo for {query[:200]!r}")
        photo = found.photos[0]
        data = await self.pexels.download(photo.src.large2x if body.width > 940 else photo.src.large)
        attribution = PexelsAttribution(
            photographer=photo.photographer, photographer_url=photo.photographer_url, photo_url=photo.url
        )
        try:
            metadata = {"source": "pexels", "query": query, **attribution.model_dump()}
            stored = await asyncio.to_thread(self.store.save_encoded, data, metadata)
        except UnsupportedImage as exc:
            raise AppError(502, "pexels_bad_image", f"Pexels sent an unusable image: {exc}") from None
        return ImageGenerationResponse(
            source="pexels",
            image_id=stored.id,
            image_url=url_for(stored.id),
            width=stored.width,
            height=stored.height,
            pexels=attribution,
            generation_error=generation_error,
        )
