"""Async client for the Pexels REST API (https://www.pexels.com/api/documentation/).

Written on httpx rather than the ``pexels-api`` package, which calls ``exit()`` on any error
and prints the API key. The key is a ``SecretStr``: it is sent only to the API host, in the
``Authorization`` header, and never appears in logs, reprs or error messages.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from cofounder_agent.contract.errors import Unavailable, UpstreamFailed, UpstreamTimeout

log = logging.getLogger(__name__)

Orientation = Literal["landscape", "portrait", "square"]
PhotoSize = Literal["large", "medium", "small"]
ATTRIBUTION = "Photos provided by Pexels"


class PexelsPhotoSrc(BaseModel):
    original: str
    large2x: str
    large: str
    medium: str
    small: str
    portrait: str
    landscape: str
    tiny: str


class PexelsPhoto(BaseModel):
    id: int
    width: int
    height: int
    url: str
    photographer: str
    photographer_url: str
    photographer_id: int | None = None
    avg_color: str | None = None
    alt: str | None = None
    src: PexelsPhotoSrc


class PexelsSearchResult(BaseModel):
    total_results: int
    page: int
    per_page: int
    photos: list[PexelsPhoto]
    next_page: str | None = None


@dataclass(frozen=True)
class RateLimit:
    """The quota Pexels reported on its last response."""

    limit: int | None
    remaining: int | None
    reset_at: int | None  # UNIX time when the quota resets


class PexelsError(UpstreamFailed):
    """A Pexels failure, with a retry hint; its base classes say what kind (the web edge maps them)."""

    code = "pexels_error"

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message, retry_after=retry_after)


class PexelsNotConfigured(Unavailable, PexelsError):
    code = "pexels_not_configured"


class PexelsAuthError(PexelsError):
    code = "pexels_auth"


class PexelsRateLimited(Unavailable, PexelsError):
    code = "pexels_rate_limited"


class PexelsUnavailable(PexelsError):
    code = "pexels_unavailable"


class PexelsTimeout(UpstreamTimeout, PexelsError):
    code = "pexels_timeout"


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class PexelsClient:
    """Search Pexels photos and download one; built once per app around a shared httpx client."""

    def __init__(
        self,
        api_key: SecretStr | None,
        http: httpx.AsyncClient,
        base_url: str = "https://api.pexels.com",
        max_download_bytes: int = 20 * 1024 * 1024,
    ) -> None:
        self._key = api_key
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._max_download = max_download_bytes
        self.rate_limit: RateLimit | None = None

    def __repr__(self) -> str:
        return f"PexelsClient(base_url={self._base_url!r}, configured={self.configured})"

    @property
    def configured(self) -> bool:
        return self._key is not None and bool(self._key.get_secret_value())

    async def search(
        self,
        query: str,
        *,
        orientation: Orientation | None = None,
        size: PhotoSize | None = None,
        per_page: int = 15,
        page: int = 1,
    ) -> PexelsSearchResult:
        """Search photos; raise a ``PexelsError`` subclass on any failure."""
        if self._key is None or not self.configured:
            raise PexelsNotConfigured("Pexels is not configured (PEXELS_API_KEY is not set)")
        params: dict[str, str | int] = {"query": query, "per_page": per_page, "page": page}
        if orientation:
            params["orientation"] = orientation
        if size:
            params["size"] = size
        headers = {"Authorization": self._key.get_secret_value()}
        response = await self._send("GET", f"{self._base_url}/v1/search", params=params, headers=headers)
        self.rate_limit = RateLimit(
            _int_header(response, "X-Ratelimit-Limit"),
            _int_header(response, "X-Ratelimit-Remaining"),
            _int_header(response, "X-Ratelimit-Reset"),
        )
        self._raise_for_status(response)
        try:
            return PexelsSearchResult.model_validate_json(response.content)
        except ValidationError as exc:
            message = f"Pexels returned an unexpected search response: {exc.error_count()} errors"
            raise PexelsUnavailable(message) from None

    async def download(self, url: str) -> bytes:
        """Fetch a photo file from the CDN (no API key sent), capped in size."""
        if not url.startswith("https://"):
            raise PexelsUnavailable("Pexels returned a non-https photo URL")
        chunks: list[bytes] = []
        try:
            async with self._http.stream("GET", url) as response:
                self._raise_for_status(response)
                received = 0
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
                    if received > self._max_download:
                        raise PexelsUnavailable(f"photo larger than {self._max_download} bytes")
                    chunks.append(chunk)
        except httpx.TimeoutException as exc:
            raise PexelsTimeout(f"Pexels did not answer in time ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise PexelsUnavailable(f"could not reach Pexels ({type(exc).__name__})") from None
        return b"".join(chunks)

    async def _send(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        try:
            return await self._http.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.TimeoutException as exc:
            raise PexelsTimeout(f"Pexels did not answer in time ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise PexelsUnavailable(f"could not reach Pexels ({type(exc).__name__})") from None

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        if status in (401, 403):
            raise PexelsAuthError(f"Pexels rejected the API key (HTTP {status}); check PEXELS_API_KEY")
        if status == 429:
            reset = _int_header(response, "X-Ratelimit-Reset")
            retry = max(1, reset - int(time.time())) if reset else 60
            raise PexelsRateLimited("Pexels rate limit reached; try again later", retry_after=retry)
        if status >= 500:
            raise PexelsUnavailable(f"Pexels is unavailable (HTTP {status})")
        raise PexelsUnavailable(f"Pexels refused the request (HTTP {status})")
