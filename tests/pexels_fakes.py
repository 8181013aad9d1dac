"""Pexels' servers stood in for by httpx.MockTransport, answering as the API docs show."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import httpx
from PIL import Image

API_KEY = "test-key-0123456789abcdef"


def photo_json(photo_id: int = 2014422) -> dict[str, object]:
    cdn = f"https://images.pexels.com/photos/{photo_id}/pexels-photo-{photo_id}.jpeg"
    return {
        "id": photo_id,
        "width": 3024,
        "height": 3024,
        "url": f"https://www.pexels.com/photo/brown-rocks-during-golden-hour-{photo_id}/",
        "photographer": "Joey Farina",
        "photographer_url": "https://www.pexels.com/@joey",
        "photographer_id": 680589,
        "avg_color": "#978E82",
        "src": {
            "original": cdn,
            "large2x": f"{cdn}?auto=compress&cs=tinysrgb&dpr=2&h=650&w=940",
            "large": f"{cdn}?auto=compress&cs=tinysrgb&h=650&w=940",
            "medium": f"{cdn}?auto=compress&cs=tinysrgb&h=350",
            "small": f"{cdn}?auto=compress&cs=tinysrgb&h=130",
            "portrait": f"{cdn}?auto=compress&cs=tinysrgb&fit=crop&h=1200&w=800",
            "landscape": f"{cdn}?auto=compress&cs=tinysrgb&fit=crop&h=627&w=1200",
            "tiny": f"{cdn}?auto=compress&cs=tinysrgb&dpr=1&fit=crop&h=200&w=280",
        },
        "liked": False,
        "alt": "Brown Rocks During Golden Hour",
    }


def jpeg_bytes(size: tuple[int, int] = (120, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


def rate_headers(remaining: int = 199) -> dict[str, str]:
    return {
        "X-Ratelimit-Limit": "200",
        "X-Ratelimit-Remaining": str(remaining),
        "X-Ratelimit-Reset": str(int(time.time()) + 3600),
    }


class FakePexels:
    """Records requests; answers searches and photo downloads like the real API and CDN."""

    def __init__(self, photos: int = 1, search_status: int = 200) -> None:
        self.requests: list[httpx.Request] = []
        self.photos = photos
        self.search_status = search_status

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "api.pexels.com" and request.url.path == "/v1/search":
            if request.headers.get("Authorization") != API_KEY:
                return httpx.Response(401, json={"error": "Unauthorized"})
            if self.search_status != 200:
                return httpx.Response(self.search_status, headers=rate_headers(0), text="error")
            body = {
                "total_results": self.photos,
                "page": 1,
                "per_page": int(request.url.params.get("per_page", 15)),
                "photos": [photo_json(2014422 + i) for i in range(self.photos)],
            }
            return httpx.Response(200, json=body, headers=rate_headers())
        if request.url.host == "images.pexels.com":
            return httpx.Response(200, content=jpeg_bytes(), headers={"Content-Type": "image/jpeg"})
        return httpx.Response(404)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


def raising(exc: Callable[[httpx.Request], Exception]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc(request)

    return httpx.MockTransport(handler)
