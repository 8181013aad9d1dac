"""Egress policy for webhooks: no loopback, private, link-local or other internal addresses."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import socket
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

log = logging.getLogger(__name__)
MAX_CONNECT_ADDRESSES = 4

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
RESOLVE_TIMEOUT_S = 10.0

_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT; not in is_private
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known NAT64: the last 32 bits are the v4 target
# Not globally reachable, but some Python versions call them global: refuse them everywhere alike.
_ALSO_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in ("0.0.0.0/8", "192.0.0.0/24", "198.18.0.0/15", "64:ff9b:1::/48", "fec0::/10", "2001::/23")
)


class EgressRefused(Exception):
    """A webhook URL or address the egress policy does not let the service reach."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class EgressPolicy:
    """What the service may reach besides the public internet: host names and networks."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> EgressPolicy:
        """Read an allow list of host names and CIDRs (a bare address is a /32 or /128)."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = _normal_host(entry)
            if not name or any(c in name for c in "/:@ []"):
                raise ValueError(f"not a host name or CIDR: {entry!r}")
            hosts.add(name)
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return _normal_host(host) in self.hosts

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` is refused, or None when the service may connect to it."""
        if any(address in network for network in self.networks if network.version == address.version):
            return None
        return address_refusal(address)


def parse_allow_setting(value: object) -> list[str]:
    """Read IMAGE_WEBHOOK_ALLOW: a JSON list, or host names and CIDRs separated by commas."""
    if isinstance(value, str):
        text = value.strip()
        items = json.loads(text) if text.startswith("[") else text.split(",")
    elif isinstance(value, list | tuple | set | frozenset):
        items = list(value)
    else:
        raise ValueError("expected a list of host names and CIDRs")
    entries = [str(item).strip() for item in items if str(item).strip()]
    EgressPolicy.parse(entries)  # refuse a malformed entry at start, not at the first webhook
    return entries


def address_refusal(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination (None: it is), looking inside v4-in-v6 forms."""
    if isinstance(address, ipaddress.IPv6Address):
        # 1. v4 addresses carried inside v6 ones reach the v4 address: judge that one.
        if address.ipv4_mapped is not None:
            return address_refusal(address.ipv4_mapped)
        if address in _NAT64:
            return address_refusal(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        embedded = [address.sixtofour] if address.sixtofour is not None else []
        embedded += list(address.teredo or ())
        for inner in embedded:
            reason = address_refusal(inner)
            if reason is not None:
                return f"a 6to4/Teredo form of {inner} ({reason})"
        if address.is_site_local:
            return "site-local"
    # 2. The address itself.
    checks = (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address in _SHARED, "shared (100.64.0.0/10)"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (any(address in n for n in _ALSO_REFUSED if n.version == address.version), "not globally routable"),
        (not address.is_global, "not globally routable"),
    )
    return next((reason for refused, reason in checks if refused), None)


# Lookups get threads of their own: a name whose DNS never answers holds a thread until the
# resolver gives up, and on the default executor a few such callback URLs would starve the
# file work (PNG writes, uploads, thumbnails) that shares it. At most this many hang at once.
_DNS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="egress-dns")


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, looked up off the event loop on the DNS threads."""
    lookup = functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    infos = await asyncio.get_running_loop().run_in_executor(_DNS, lookup)
    seen: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        # Drop a v6 scope id ("fe80::1%eth0"): the address decides, and it is link-local anyway.
        seen.setdefault(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]), None)
    return list(seen)


def check_shape(url: str) -> tuple[str, int]:
    """The host and port of an http(s) URL without credentials; EgressRefused otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EgressRefused(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise EgressRefused("only http and https URLs are allowed")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise EgressRefused("user names and passwords in the URL are not allowed")
    if not parts.hostname:
        raise EgressRefused("the URL has no host")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def lookup(host: str, port: int, resolve: Resolver | None = None) -> list[IPAddress]:
    """Resolve ``host`` within RESOLVE_TIMEOUT_S; OSError when it does not resolve."""
    try:
        addresses = await asyncio.wait_for((resolve or resolve_host)(host, port), RESOLVE_TIMEOUT_S)
    except (TimeoutError, UnicodeError, ValueError) as exc:
        raise OSError(f"{host} does not resolve") from exc
    if not addresses:
        raise OSError(f"{host} does not resolve")
    return addresses


def check_addresses(host: str, addresses: Sequence[IPAddress], policy: EgressPolicy) -> None:
    """Raise EgressRefused when ANY of ``host``'s addresses is refused: a client may pick any."""
    for address in addresses:
        reason = policy.refusal(address)
        if reason is not None:
            shown = host if _same_address(host, address) else f"{host} resolves to {address}, which"
            raise EgressRefused(f"{shown} is {reason}; only public addresses (or IMAGE_WEBHOOK_ALLOW) are allowed")


async def check_url(url: str, policy: EgressPolicy, resolve: Resolver | None = None) -> None:
    """Raise EgressRefused unless ``url`` is http(s), has no credentials and reaches only allowed addresses."""
    host, port = check_shape(url)
    if policy.allows_host(host):
        return
    host = host.strip("[]")
    try:
        addresses = await lookup(host, port, resolve)
        check_addresses(host, addresses, policy)
    except (OSError, EgressRefused) as exc:
        if _is_address(host):  # a literal address: saying why reveals nothing the caller did not send
            raise EgressRefused(str(exc) if isinstance(exc, EgressRefused) else f"{host} is not reachable") from None
        # A name: what it resolves to (or that it exists) is the operator's to know, not the
        # caller's, or the 422 would map the internal DNS for anyone who can submit a job.
        log.info("callback_url refused: %s", exc)
        raise EgressRefused(
            f"{host} is not a public destination (or does not resolve); only public addresses "
            "(or IMAGE_WEBHOOK_ALLOW) are allowed"
        ) from None


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connect only to addresses the policy allows, checked at connect time (no DNS rebinding)."""

    def __init__(
        self, policy: EgressPolicy, resolve: Resolver | None = None, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.policy, self.resolve = policy, resolve
        self.inner = inner or httpcore.AnyIOBackend()  # what really opens sockets

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        options = list(socket_options or ())
        if self.policy.allows_host(host):
            return await self.inner.connect_tcp(host, port, timeout, local_address, options)
        # 1. Resolve once and check every address; the connection goes to one of these, not
        #    to a second lookup that could answer differently. TLS still verifies the host
        #    name: httpcore passes it to start_tls as server_hostname.
        try:
            addresses = await lookup(host, port, self.resolve)
        except OSError as exc:  # DNS trouble may pass: the sender retries it like any network error
            raise httpcore.ConnectError(str(exc)) from exc
        check_addresses(host, addresses, self.policy)
        # 2. Try them in order, as a resolver-driven connect would, but only the first few: a
        #    name with many black-holed addresses must not hold a delivery for long.
        error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses[:MAX_CONNECT_ADDRESSES]:
            try:
                return await self.inner.connect_tcp(str(address), port, timeout, local_address, options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None  # addresses is never empty
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a connection pool whose every connection goes through GuardedBackend."""

    def __init__(self, backend: GuardedBackend) -> None:
        ssl_context = httpx.create_ssl_context(trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx has no public way to choose the network backend; its pool is the one seam.
        # test_egress's rebinding tests fail if a new httpx stops using this attribute.
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's defaults
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            network_backend=backend,
        )


def webhook_client(
    allow: Sequence[str], *, resolve: Resolver | None = None, timeout_s: float = 10.0
) -> httpx.AsyncClient:
    """The HTTP client for webhooks: policy-checked connects, no env proxies or .netrc, no redirects."""
    transport = GuardedTransport(GuardedBackend(EgressPolicy.parse(allow), resolve))
    return httpx.AsyncClient(transport=transport, timeout=timeout_s, trust_env=False, follow_redirects=False)


def _same_address(host: str, address: IPAddress) -> bool:
    try:
        return ipaddress.ip_address(host) == address
    except ValueError:
        return False


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()
