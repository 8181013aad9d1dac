"""Dependencies: the services built in the lifespan, handed to routes by type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import Receive

from cofounder_agent.config import Settings
from cofounder_agent.jobs.attend import Gone
from cofounder_agent.jobs.service import JobService
from cofounder_agent.jobs.store import Store
from cofounder_agent.services.featured_image import FeaturedImageService
from cofounder_agent.services.fleet import Fleet
from cofounder_agent.services.gallery import Gallery
from cofounder_agent.services.openai_images import OpenAIImages
from cofounder_agent.services.pexels import PexelsClient
from cofounder_agent.storage import ImageStore


def _from_state(name: str) -> Callable[[Request], Any]:
    """A dependency that hands over the service the lifespan stored as ``app.state.<name>``."""

    def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    get.__name__ = f"get_{name}"
    return get


SettingsDep = Annotated[Settings, Depends(_from_state("settings"))]
FleetDep = Annotated[Fleet, Depends(_from_state("fleet"))]
PexelsDep = Annotated[PexelsClient, Depends(_from_state("pexels"))]
ImageFilesDep = Annotated[ImageStore, Depends(_from_state("files"))]
FeaturedImageDep = Annotated[FeaturedImageService, Depends(_from_state("featured"))]
JobServiceDep = Annotated[JobService, Depends(_from_state("jobs"))]
JobStoreDep = Annotated[Store, Depends(_from_state("job_store"))]
GalleryDep = Annotated[Gallery, Depends(_from_state("gallery"))]


def _openai_images(jobs: JobServiceDep, gallery: GalleryDep, files: ImageFilesDep) -> OpenAIImages:
    return OpenAIImages(jobs, gallery, files)


OpenAIImagesDep = Annotated[OpenAIImages, Depends(_openai_images)]


def disconnect_of(receive: Receive) -> Gone:
    """A watcher that returns once the ASGI server reports the client gone."""

    async def gone() -> None:
        # With the body read, the server's receive() blocks until the client disconnects
        # (or the response is complete); it then answers http.disconnect.
        while (await receive())["type"] != "http.disconnect":
            pass

    return gone
