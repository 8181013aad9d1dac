"""The Pexels client against responses shaped like the documented API."""

from __future__ import annotations

import logging

import httpx
import pytest
from pydantic import SecretStr

from cofounder_agent.services.pexels import (
    PexelsAuthError,
    PexelsClient,
    PexelsNotConfigured,
    PexelsRateLimited,
    PexelsTimeout,
    PexelsUnavailable,
)
from pexels_fakes import API_KEY, FakePexels, raising


def _client(transport: httpx.AsyncBaseTransport, key: str | None = API_KEY) -> PexelsClient:
    return PexelsClient(SecretStr(key) if key else None, httpx.AsyncClient(transport=transport))


async def test_search_sends_documented_request_and_parses_photos() -> None:
    fake = FakePexels(photos=2)
    result = await _client(fake.transport()).search("mountain lake", orientation="landscape", size="large", per_page=2)
    request = fake.requests[0]
    assert request.url.path == "/v1/search"
    assert request.headers["Authorization"] == API_KEY
    assert dict(request.url.params) == {
        "query": "mountain lake",
        "orientation": "landscape",
        "size": "large",
        "per_page": "2",
        "page": "1",
    }
    assert [p.id for p in result.photos] == [2014422, 2014423]
    assert result.photos[0].photographer == "Joey Farina"
    assert result.photos[0].src.large.startswith("https://images.pexels.com/")


async def test_rate_limit_headers_are_read() -> None:
    client = _client(FakePexels().transport())
    await client.search("cat")
    assert client.rate_limit is not None
    assert (client.rate_limit.limit, client.rate_limit.remaining) == (200, 199)


async def test_download_sends_no_api_key_to_the_cdn() -> None:
    fake = FakePexels()
    client = _client(fake.transport())
    photo = (await client.search("cat")).photos[0]
    data = await client.download(photo.src.large)
    assert data[:2] == b"\xff\xd8"  # JPEG
    assert "Authorization" not in fake.requests[-1].headers


async def test_download_is_size_capped() -> None:
    client = PexelsClient(
        SecretStr(API_KEY), httpx.AsyncClient(transport=FakePexels().transport()), max_download_bytes=100
    )
    with pytest.raises(PexelsUnavailable, match="larger than"):
        await client.download("https://images.pexels.com/photos/1/x.jpeg")


async def test_wrong_key_is_a_clear_auth_error() -> None:
    with pytest.raises(PexelsAuthError, match="PEXELS_API_KEY"):
        await _client(FakePexels().transport(), key="wrong").search("cat")


async def test_429_is_rate_limited_with_retry_after() -> None:
    with pytest.raises(PexelsRateLimited) as info:
        await _client(FakePexels(search_status=429).transport()).search("cat")
    assert info.value.retry_after is not None and 3500 <= info.value.retry_after <= 3600


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_unavailable(status: int) -> None:
    with pytest.raises(PexelsUnavailable, match=str(status)):
        await _client(FakePexels(search_status=status).transport()).search("cat")


async def test_timeouts_and_network_errors() -> None:
    with pytest.raises(PexelsTimeout):
        await _client(raising(lambda r: httpx.ReadTimeout("slow", request=r))).search("cat")
    with pytest.raises(PexelsUnavailable, match="could not reach"):
        await _client(raising(lambda r: httpx.ConnectError("refused", request=r))).search("cat")


async def test_malformed_response_is_unavailable() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"photos": "nope"}))
    with pytest.raises(PexelsUnavailable, match="unexpected"):
        await _client(transport).search("cat")


async def test_not_configured_without_key() -> None:
    client = _client(FakePexels().transport(), key=None)
    assert not client.configured
    with pytest.raises(PexelsNotConfigured):
        await client.search("cat")


async def test_key_never_in_logs_repr_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = _client(FakePexels(search_status=500).transport())
    with pytest.raises(PexelsUnavailable) as info:
        await client.search("cat")
    assert API_KEY not in repr(client)
    assert API_KEY not in str(info.value)
    assert API_KEY not in caplog.text
