"""The seed's generate-image flow: SDXL (through the job queue) when asked and ready, else Pexels."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from cofounder_agent.config import Settings
from cofounder_agent.contract.errors import DomainError, NotFound, QueueFull, Unavailable, UpstreamFailed
from cofounder_agent.contract.fields import SEED_FIELDS
from cofounder_agent.jobs.attend import Caller, run_for
from cofounder_agent.jobs.resolve import invalid, resolve_recipe
from cofounder_agent.jobs.service import JobService
from cofounder_agent.jobs.tables import ImageRow
from cofounder_agent.schemas.jobs import JobCreate, RefinerSpec
from cofounder_agent.schemas.media import (
    ImageGenerationRequest,
    ImageGenerationResponse,
    PexelsAttribution,
    RefinerInfo,
)
from cofounder_agent.services.fleet import Fleet
from cofounder_agent.services.pexels import Orientation, PexelsClient
from cofounder_agent.storage import ImageStore, UnsupportedImage

log = logging.getLogger(__name__)
UrlFor = Callable[[str], str]


def to_recipe(body: ImageGenerationRequest, settings: Settings) -> JobCreate:
    """The seed request as a resolved job recipe; refuses contradictions with a 422."""
    if not body.use_refinement and body.refiner_mode not in (None, "none"):
        raise invalid("refiner_mode", "contradicts use_refinement=false")
    mode = body.refiner_mode or (settings.image_refiner_mode if body.use_refinement else "none")
    recipe = JobCreate(
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        seed=body.seed,
        width=body.width,
        height=body.height,
        steps=body.base_steps,
        guidance_scale=body.guidance_scale,
        scheduler=body.scheduler,
        refiner=RefinerSpec(
            mode=mode, switch_at=body.switch_at, steps=body.refiner_steps, strength=body.refiner_strength
        ),
    )
    return resolve_recipe(recipe, settings, SEED_FIELDS)


def _orientation(width: int, height: int) -> Orientation:
    if width == height:
        return "square"
    return "landscape" if width > height else "portrait"


class GenerationFailed(Exception):
    """The queued generation ended without an image."""


class FeaturedImageService:
    """Choose the source for one request and store what it produced."""

    def __init__(
        self, fleet: Fleet, jobs: JobService, pexels: PexelsClient, store: ImageStore, settings: Settings
    ) -> None:
        # The fleet: this process's engine, or on an API replica the live workers' (any ready one).
        self.fleet, self.jobs, self.pexels, self.store, self.settings = fleet, jobs, pexels, store, settings

    async def produce(self, body: ImageGenerationRequest, url_for: UrlFor, caller: Caller) -> ImageGenerationResponse:
        """Serve ``body`` from SDXL or Pexels; ``url_for(image_id)`` makes the public URL."""
        generation_error: str | None = None
        busy: QueueFull | None = None
        status = await self.fleet.status()
        if body.use_generation:
            recipe = to_recipe(body, self.settings)  # bad input is a 422, never a Pexels fallback
            if status.state == "ready":
                try:
                    return await self._generate(recipe, url_for, caller)
                except QueueFull as exc:
                    busy, generation_error = exc, exc.message
                except DomainError:  # the caller's own fault (a 422, gone): no fallback hides it
                    raise
                except Exception as exc:  # e.g. CUDA OOM: fall back to Pexels when allowed
                    log.warning("generation failed: %s", exc)
                    # Raw details (paths, library internals) stay in the log and the job record.
                    generation_error = f"generation failed ({type(exc).__name__}); see the server log"
            else:
                detail = f" ({status.error})" if status.error else ""
                generation_error = f"image model is {status.state}{detail}"

        if body.use_pexels and self.pexels.configured:
            return await self._stock_photo(body, url_for, generation_error)
        if busy is not None:
            raise busy

        pexels_reason = "use_pexels is false" if not body.use_pexels else "PEXELS_API_KEY is not set"
        generation_error = generation_error or "use_generation is false"
        loading = body.use_generation and status.state == "loading"
        raise Unavailable(
            f"no image source available: {generation_error}; Pexels not used: {pexels_reason}",
            code="no_image_source",
            retry_after=10 if loading else None,
        )

    async def _generate(self, recipe: JobCreate, url_for: UrlFor, caller: Caller) -> ImageGenerationResponse:
        # The same queue as POST /v1/jobs: submit, then wait for the job to end (or the caller to leave).
        job = await run_for(self.jobs, recipe, caller, SEED_FIELDS)
        if job.status != "succeeded" or not job.results:
            raise GenerationFailed(f"job {job.id} {job.status}: {job.error}")
        result = job.results[0]
        stored = self.store.find(result["image_id"])
        assert stored is not None
        spec = recipe.refiner or RefinerSpec()
        status = await self.fleet.engine_of(job.worker_id)
        return ImageGenerationResponse(
            source="tiny" if status.is_tiny else "sdxl",
            image_id=stored.id,
            image_url=url_for(stored.id),
            width=stored.width,
            height=stored.height,
            model=status.base_model,
            seed=result["seed"],
            num_inference_steps=recipe.steps,
            guidance_scale=recipe.guidance_scale,
            scheduler=recipe.scheduler,
            refiner=RefinerInfo(
                mode=spec.mode,
                applied=result["refiner_applied"],
                fallback_reason=result["refiner_fallback_reason"],
                switch_at=spec.switch_at,
                steps=spec.steps,
                strength=spec.strength,
            ),
            timings=result["timings"],
            job_id=job.id,
        )

    async def _stock_photo(
        self, body: ImageGenerationRequest, url_for: UrlFor, generation_error: str | None
    ) -> ImageGenerationResponse:
        query = " ".join(body.keywords) if body.keywords else (body.title or body.prompt)
        found = await self.pexels.search(query[:200], orientation=_orientation(body.width, body.height), per_page=1)
        if not found.photos:
            raise NotFound("stock photo", None, f"Pexels has no photo for {query[:200]!r}", code="no_stock_photo")
        photo = found.photos[0]
        data = await self.pexels.download(photo.src.large2x if body.width > 940 else photo.src.large)
        attribution = PexelsAttribution(
            photographer=photo.photographer, photographer_url=photo.photographer_url, photo_url=photo.url
        )
        try:
            metadata = {"source": "pexels", "query": query, **attribution.model_dump()}
            stored = await asyncio.to_thread(self.store.save_encoded, data, metadata)
        except UnsupportedImage as exc:
            raise UpstreamFailed(f"Pexels sent an unusable image: {exc}", code="pexels_bad_image") from None
        await self.jobs.store.add_image(
            ImageRow(
                id=stored.id,
                media_type=stored.media_type,
                width=stored.width,
                height=stored.height,
                source="pexels",
            )
        )
        return ImageGenerationResponse(
            source="pexels",
            image_id=stored.id,
            image_url=url_for(stored.id),
            width=stored.width,
            height=stored.height,
            pexels=attribution,
            generation_error=generation_error,
        )
