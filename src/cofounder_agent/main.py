"""The FastAPI application: services built once in the lifespan, routes injected with them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from cofounder_agent import __version__
from cofounder_agent.config import Settings
from cofounder_agent.errors import install_error_handlers
from cofounder_agent.middleware import FormAsJsonMiddleware
from cofounder_agent.routes import health, images, media_routes
from cofounder_agent.services.featured_image import FeaturedImageService
from cofounder_agent.services.image_service import ImageService
from cofounder_agent.services.pexels import PexelsClient
from cofounder_agent.storage import ImageStore


def create_app(settings: Settings | None = None, *, http_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """Build the app; ``http_transport`` lets tests stand in for Pexels' servers."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # 1. Services, built once and shared through app.state (see deps.py).
        http = httpx.AsyncClient(transport=http_transport, timeout=settings.pexels_timeout_s, follow_redirects=True)
        image_service = ImageService(settings)
        app.state.settings = settings
        app.state.store = ImageStore(settings.image_data_dir)
        app.state.image_service = image_service
        app.state.pexels = PexelsClient(
            settings.pexels_api_key,
            http,
            settings.pexels_base_url,
            max_download_bytes=int(settings.pexels_max_download_mb * 1024 * 1024),
        )
        app.state.featured = FeaturedImageService(image_service, app.state.pexels, app.state.store, settings)
        # 2. Models load in the background: /healthz answers at once, /readyz when loaded.
        image_service.start()
        try:
            yield
        finally:
            await image_service.close()
            await http.aclose()

    app = FastAPI(title="cofounder-agent image service", version=__version__, lifespan=lifespan)
    app.add_middleware(FormAsJsonMiddleware)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(media_routes.router)
    app.include_router(images.router)
    return app
