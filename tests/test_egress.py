"""Webhooks reach only public addresses (or the allow list), at submit and at connect time.

No test here sends a packet anywhere but loopback: public addresses are only judged (getaddrinfo
of a numeric literal asks no DNS server) or "connected" through httpcore's mock backend.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from pydantic import AnyHttpUrl, TypeAdapter

from cofounder_agent.config import Settings
from cofounder_agent.services import egress
from cofounder_agent.services.egress import (
    EgressPolicy,
    EgressRefused,
    GuardedBackend,
    GuardedTransport,
    IPAddress,
    address_refusal,
    check_url,
    webhook_client,
)
from cofounder_agent.services.webhooks import WebhookSender
from conftest import make_settings, running_server, wait_ready
from webhook_receiver import Receiver

FAST: dict[str, Any] = {"prompt": "a kite", "width": 64, "height": 64, "steps": 20}
PUBLIC = "93.184.215.14"  # judged, never connected to
DENY_ALL = EgressPolicy()

INTERNAL_URLS = [
    "http://127.0.0.1/hook",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://localhost:8080/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::7f00:1]/",  # IPv4-compatible (deprecated)
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",  # AWS metadata over IPv6
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://240.0.0.1/",
    "http://198.18.0.1/",
    "http://192.0.0.8/",
    "http://0.0.0.0/",
    "http://0/",
    "http://[::]/",
    "http://[fc00::1]/",
    "http://[fe80::1]/",
    "http://[fec0::1]/",
    "http://[ff02::1]/",
    "http://[ff0e::1]/",
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
    "http://[64:ff9b:1::a00:1]/",  # local-use NAT64
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://[2002:a9fe:a9fe::]/",  # 6to4 of 169.254.169.254
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
    "https://[2001:db8::1]/",  # documentation
]


@pytest.mark.parametrize("url", INTERNAL_URLS)
async def test_internal_addresses_are_refused_in_every_spelling(url: str) -> None:
    with pytest.raises(EgressRefused):
        await check_url(url, DENY_ALL)
    # The same after pydantic's URL normalisation (what JobCreate hands the service).
    with pytest.raises(EgressRefused):
        await check_url(str(TypeAdapter(AnyHttpUrl).validate_python(url)), DENY_ALL)


@pytest.mark.parametrize(
    "address",
    [PUBLIC, "8.8.8.8", "2606:2800:220:1::", f"64:ff9b::{PUBLIC}", "2002:5db8:d70e::", f"::ffff:{PUBLIC}"],
)
async def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None
    host = f"[{address}]" if ":" in address else address
    await check_url(f"https://{host}/hooks/images?token=x", DENY_ALL)  # resolves the literal; connects nowhere


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.215.14/",
        "file:///etc/passwd",
        "gopher://93.184.215.14/",
        "http://user:pw@93.184.215.14/",
        "http://user@93.184.215.14/",
        "http:///nohost",
        "http://93.184.215.14:99999/",
    ],
)
async def test_non_http_urls_and_credentials_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused):
        await check_url(url, DENY_ALL)


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    async def nxdomain(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def nothing(host: str, port: int) -> list[IPAddress]:
        return []

    for resolve in (nxdomain, nothing):
        with pytest.raises(EgressRefused, match="does not resolve"):
            await check_url("https://hooks.example/x", DENY_ALL, resolve)


async def test_one_internal_address_among_public_ones_refuses_the_host(caplog: pytest.LogCaptureFixture) -> None:
    async def mixed(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(PUBLIC), ipaddress.ip_address("10.1.2.3")]

    caplog.set_level(logging.INFO, logger="cofounder_agent.services.egress")
    with pytest.raises(EgressRefused, match="not a public destination") as refused:
        await check_url("https://hooks.example/x", DENY_ALL, mixed)
    # What a name resolves to is the operator's to know (the log), never the caller's: a 422
    # that named internal addresses would map the internal DNS for anyone who can submit a job.
    assert "10.1.2.3" not in str(refused.value)
    assert "10.1.2.3" in caplog.text and "private" in caplog.text


async def test_allow_list_by_cidr_and_by_host() -> None:
    policy = EgressPolicy.parse(["127.0.0.1/32", "10.20.0.0/16", "::1", "Hooks.Internal."])
    await check_url("http://127.0.0.1:8080/hook", policy)
    await check_url("http://127.1:8080/hook", policy)
    await check_url("http://[::1]/hook", policy)

    async def forbidden(host: str, port: int) -> list[IPAddress]:
        raise AssertionError("an allowed host name is not resolved")

    await check_url("https://hooks.internal/x", policy, forbidden)
    await check_url("https://HOOKS.internal./x", policy, forbidden)

    async def internal(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("10.20.3.4")]

    await check_url("https://other.example/x", policy, internal)  # in 10.20/16
    for url in ("http://127.0.0.2/", "http://10.21.0.1/", "http://169.254.169.254/", "http://[::ffff:127.0.0.2]/"):
        with pytest.raises(EgressRefused):
            await check_url(url, policy)


def test_allow_setting_reads_json_lists_and_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    for raw in ('["127.0.0.1/32", "hooks.internal"]', "127.0.0.1/32, hooks.internal", " 127.0.0.1/32 ,hooks.internal,"):
        monkeypatch.setenv("IMAGE_WEBHOOK_ALLOW", raw)
        assert Settings(_env_file=None).image_webhook_allow == ["127.0.0.1/32", "hooks.internal"]  # type: ignore[call-arg]
    monkeypatch.setenv("IMAGE_WEBHOOK_ALLOW", "")
    assert Settings(_env_file=None).image_webhook_allow == []  # type: ignore[call-arg]
    for bad in ("hooks internal", "http://hooks.internal/", '["a", '):
        monkeypatch.setenv("IMAGE_WEBHOOK_ALLOW", bad)
        with pytest.raises(ValueError, match="image_webhook_allow"):
            Settings(_env_file=None)  # type: ignore[call-arg]


# --- the delivery transport: checks the address it really connects to --------------------


@pytest.fixture
def quiet_receiver() -> Iterator[Receiver]:
    server = Receiver(failures=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


async def test_transport_refuses_loopback_and_delivers_when_allowed(quiet_receiver: Receiver) -> None:
    async with webhook_client([]) as client:
        with pytest.raises(EgressRefused, match="loopback"):
            await client.post(quiet_receiver.url, content=b"{}")
    assert quiet_receiver.received == []
    async with webhook_client(["127.0.0.1/32"]) as client:
        assert (await client.post(quiet_receiver.url, content=b"{}")).status_code == 200
    assert len(quiet_receiver.received) == 1


async def test_transport_checks_the_address_at_connect_time_not_the_submitted_one(quiet_receiver: Receiver) -> None:
    # DNS rebinding: "localhost" was public when the job was submitted, loopback now.
    answers = [[ipaddress.ip_address(PUBLIC)], [ipaddress.ip_address("127.0.0.1")]]

    async def rebinding(host: str, port: int) -> list[IPAddress]:
        return answers.pop(0)

    url = quiet_receiver.url.replace("127.0.0.1", "localhost")
    await check_url(url, DENY_ALL, rebinding)  # passes at submit
    async with webhook_client([], resolve=rebinding) as client:
        with pytest.raises(EgressRefused, match=r"localhost resolves to 127\.0\.0\.1"):
            await client.post(url, content=b"{}")
    assert answers == [] and quiet_receiver.received == []


class _Recorder(httpcore.AsyncMockBackend):
    """A fake network: records where it was asked to connect and the TLS name; answers 204."""

    def __init__(self) -> None:
        super().__init__([b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"])
        self.hosts: list[str] = []
        self.tls_names: list[str | None] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self.hosts.append(host)
        recorder = self

        class Stream(httpcore.AsyncMockStream):
            async def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: Any = None) -> Any:  # noqa: ASYNC109
                recorder.tls_names.append(server_hostname)
                return self

        return Stream(list(self._buffer))


async def test_transport_connects_to_the_checked_address_and_verifies_tls_by_name() -> None:
    async def public(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(PUBLIC)]

    fake = _Recorder()
    transport = GuardedTransport(GuardedBackend(DENY_ALL, public, inner=fake))
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.post("https://hooks.example/x", content=b"{}")).status_code == 204
    assert fake.hosts == [PUBLIC] and fake.tls_names == ["hooks.example"]


async def test_a_refused_delivery_is_logged_once_without_the_query_and_never_raises(
    quiet_receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    async def loopback(host: str, port: int) -> list[IPAddress]:
        calls.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    sender = WebhookSender(webhook_client([], resolve=loopback), None, attempts=5, first_delay_s=0.01)
    url = quiet_receiver.url.replace("127.0.0.1", "hooks.example") + "?token=s3cret"
    with caplog.at_level(logging.WARNING):
        assert await sender.deliver(url, b"{}", "job1") is False
        assert await sender.deliver("http://u:s3cret@hooks.example/", b"{}", "job2") is False
    assert calls == ["hooks.example"]  # not retried; the second never got as far as DNS
    assert "egress policy" in caplog.text and "s3cret" not in caplog.text
    assert quiet_receiver.received == []
    await sender.http.aclose()


# --- over HTTP on a real server ---------------------------------------------------------


def _wait_done(url: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        job: dict[str, Any] = httpx.get(f"{url}/v1/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(make_settings(tmp_path_factory.mktemp("egress"))) as url:
        wait_ready(url)
        yield url


# Loopback spellings only: should the check ever break, the worker would post to these.
@pytest.mark.parametrize("host", ["127.0.0.1", "127.1", "0x7f000001", "2130706433", "localhost", "[::ffff:127.0.0.1]"])
def test_submit_refuses_an_internal_callback_url(strict_server: str, quiet_receiver: Receiver, host: str) -> None:
    callback = quiet_receiver.url.replace("127.0.0.1", host)
    before = httpx.get(f"{strict_server}/v1/jobs").json()["count"]
    response = httpx.post(f"{strict_server}/v1/jobs", json={**FAST, "callback_url": callback})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "callback_url" and error["message"].startswith("callback_url: ")
    assert httpx.get(f"{strict_server}/v1/jobs").json()["count"] == before  # nothing was queued


def test_dns_rebinding_after_submit_is_refused_at_delivery(
    strict_server: str, quiet_receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real, lookups = egress.resolve_host, []

    async def rebinding(host: str, port: int) -> list[IPAddress]:
        if host != "localhost":
            return await real(host, port)
        lookups.append(host)  # the first answer (at submit) is public, every later one loopback
        return [ipaddress.ip_address(PUBLIC if len(lookups) == 1 else "127.0.0.1")]

    monkeypatch.setattr(egress, "resolve_host", rebinding)
    caplog.set_level(logging.WARNING, logger="cofounder_agent.services.webhooks")
    callback = quiet_receiver.url.replace("127.0.0.1", "localhost")
    response = httpx.post(f"{strict_server}/v1/jobs", json={**FAST, "callback_url": callback})
    assert response.status_code in (200, 202), response.text
    assert _wait_done(strict_server, response.json()["id"])["status"] == "succeeded"
    deadline = time.monotonic() + 30
    while "refused by the egress policy" not in caplog.text:
        assert time.monotonic() < deadline, (lookups, quiet_receiver.received)
        time.sleep(0.05)
    assert quiet_receiver.received == [] and len(lookups) == 2


def test_a_loopback_webhook_is_delivered_when_allowed(
    tmp_path: Path, quiet_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGE_WEBHOOK_ALLOW", "127.0.0.1/32")
    with running_server(make_settings(tmp_path)) as url:
        wait_ready(url)
        response = httpx.post(f"{url}/v1/jobs", json={**FAST, "callback_url": quiet_receiver.url})
        assert response.status_code in (200, 202), response.text
        assert _wait_done(url, response.json()["id"])["status"] == "succeeded"
        deadline = time.monotonic() + 30
        while not quiet_receiver.received:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert quiet_receiver.received[0][0] == 200
