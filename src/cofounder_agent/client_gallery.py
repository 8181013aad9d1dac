"""The SDK's image listing and moves, mixed into ``Client`` and ``AsyncClient`` (client.py).

Apart so that client.py stays one readable file; the methods reach the HTTP pool through the
host class's ``_json``, so errors come back as the same ``ApiError``.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from cofounder_agent.schemas.jobs import ImagePublic, ImagesPublic

M = TypeVar("M", bound=BaseModel)
Order = Literal["oldest", "newest"]
# The listing's board_id for the images in no board (None lists every image).
UNBOARDED = "none"


class _SyncHost(Protocol):
    def _json(self, model: type[M], method: str, url: str, **kwargs: Any) -> M: ...


class _AsyncHost(Protocol):
    async def _json(self, model: type[M], method: str, url: str, **kwargs: Any) -> M: ...


def _listing(board_id: str | None, intermediate: bool | None, order: Order, limit: int, offset: int) -> dict[str, Any]:
    params: dict[str, Any] = {"order": order, "limit": limit, "offset": offset}
    if board_id is not None:
        params["board_id"] = board_id
    if intermediate is not None:
        params["intermediate"] = str(intermediate).lower()
    return params


def _image(image_id: str) -> str:
    # One path segment: quoting keeps "../x" from naming another route.
    return f"/v1/images/{quote(image_id, safe='')}"


class GalleryCalls:
    """``Client``'s image listing and moves."""

    def list_images(
        self: _SyncHost,
        board_id: str | None = None,
        *,
        intermediate: bool | None = None,
        order: Order = "oldest",
        limit: int = 50,
        offset: int = 0,
    ) -> ImagesPublic:
        """List stored images: a board's (its id), those in no board (``UNBOARDED``), or all (``None``)."""
        params = _listing(board_id, intermediate, order, limit, offset)
        return self._json(ImagesPublic, "GET", "/v1/images", params=params)

    def move_image(self: _SyncHost, image_id: str, board_id: str | None) -> ImagePublic:
        """Move an image into a board, or out of every board (``None``)."""
        return self._json(ImagePublic, "PATCH", _image(image_id), json={"board_id": board_id})


class AsyncGalleryCalls:
    """``AsyncClient``'s image listing and moves."""

    async def list_images(
        self: _AsyncHost,
        board_id: str | None = None,
        *,
        intermediate: bool | None = None,
        order: Order = "oldest",
        limit: int = 50,
        offset: int = 0,
    ) -> ImagesPublic:
        """List stored images: a board's (its id), those in no board (``UNBOARDED``), or all (``None``)."""
        params = _listing(board_id, intermediate, order, limit, offset)
        return await self._json(ImagesPublic, "GET", "/v1/images", params=params)

    async def move_image(self: _AsyncHost, image_id: str, board_id: str | None) -> ImagePublic:
        """Move an image into a board, or out of every board (``None``)."""
        return await self._json(ImagePublic, "PATCH", _image(image_id), json={"board_id": board_id})
