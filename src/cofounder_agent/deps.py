"""Dependencies: the services built in the lifespan, handed to routes by type."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from cofounder_agent.config import Settings
from cofounder_agent.jobs.service import JobService
from cofounder_agent.jobs.store import Store
from cofounder_agent.services.featured_image import FeaturedImageService
from cofounder_agent.services.gallery import Gallery
from cofounder_agent.services.image_service import ImageService
from cofounder_agent.services.pexels import PexelsClient
from cofounder_agent.storage import ImageStore


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_image_service(request: Request) -> ImageService:
    service: ImageService = request.app.state.image_service
    return service


def get_pexels(request: Request) -> PexelsClient:
    client: PexelsClient = request.app.state.pexels
    return client


def get_store(request: Request) -> ImageStore:
    store: ImageStore = request.app.state.store
    return store


def get_featured(request: Request) -> FeaturedImageService:
    service: FeaturedImageService = request.app.state.featured
    return service


SettingsDep = Annotated[Settings, Depends(get_settings)]
ImageServiceDep = Annotated[ImageService, Depends(get_image_service)]
PexelsDep = Annotated[PexelsClient, Depends(get_pexels)]
StoreDep = Annotated[ImageStore, Depends(get_store)]
FeaturedImageDep = Annotated[FeaturedImageService, Depends(get_featured)]


def get_jobs(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


def get_db(request: Request) -> Store:
    store: Store = request.app.state.db
    return store


JobServiceDep = Annotated[JobService, Depends(get_jobs)]
DbDep = Annotated[Store, Depends(get_db)]


def get_gallery(request: Request) -> Gallery:
    gallery: Gallery = request.app.state.gallery
    return gallery


GalleryDep = Annotated[Gallery, Depends(get_gallery)]
