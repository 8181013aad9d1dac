"""/ui without a browser: its files open without the key, with a strict policy; the API stays keyed."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from cofounder_agent.ui import CSP, UI_DIR
from conftest import make_settings, running_server

KEY = {"X-API-Key": "s3cret"}
# Any absolute or protocol-relative URL: the page must load nothing from other origins.
EXTERNAL = re.compile(r"(?:https?:)?//[\w.-]+\.\w", re.IGNORECASE)
# An XML namespace (an SVG's xmlns) is a name, never fetched.
NAMESPACE = re.compile(r"""\bxmlns(?::\w+)?=(["'])[^"']*\1""")
MEDIA_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # An API replica with a key: no engine to load, the same routes and middleware as `serve`.
    settings = make_settings(tmp_path_factory.mktemp("ui"), image_api_key="s3cret")
    with running_server(settings, embedded_worker=False) as url:
        yield url


def _files() -> list[Path]:
    return sorted(path for path in UI_DIR.rglob("*") if path.is_file())


def test_the_page_opens_without_the_key_while_the_api_still_needs_it(server: str) -> None:
    page = httpx.get(f"{server}/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.content == (UI_DIR / "index.html").read_bytes()
    assert httpx.head(f"{server}/ui/").status_code == 200
    for path in ("/v1/boards", "/v1/images", "/api/media/health", "/docs", "/uix", "/ui.json"):
        assert httpx.get(f"{server}{path}").status_code == 401, path
    assert httpx.get(f"{server}/v1/boards", headers=KEY).status_code == 200


def test_ui_redirects_to_the_directory(server: str) -> None:
    redirect = httpx.get(f"{server}/ui")
    assert redirect.status_code in (307, 308) and urlsplit(redirect.headers["location"]).path == "/ui/"
    assert httpx.get(f"{server}/ui", follow_redirects=True).status_code == 200


def test_every_file_comes_with_the_policy_and_its_own_type(server: str) -> None:
    assert (UI_DIR / "index.html") in _files()
    for path in _files():
        url = f"{server}/ui/{path.relative_to(UI_DIR).as_posix()}"
        response = httpx.get(url)
        assert response.status_code == 200, url
        assert response.content == path.read_bytes(), url
        headers = response.headers
        assert headers["content-security-policy"] == CSP, url
        assert (headers["x-content-type-options"], headers["referrer-policy"]) == ("nosniff", "no-referrer"), url
        assert headers["cache-control"] == "no-cache" and headers["etag"], url
        if path.suffix in MEDIA_TYPES:  # module scripts run only when served as JavaScript (nosniff)
            assert headers["content-type"].startswith(MEDIA_TYPES[path.suffix]), url


def test_the_policy_allows_only_this_origin_and_stays_off_the_docs(server: str) -> None:
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["default-src"] == "'self'" and "'unsafe-inline'" not in CSP and "http" not in CSP
    assert directives["img-src"] == "'self' blob: data:"  # pictures are fetched with the key, shown as blobs
    assert (directives["object-src"], directives["frame-ancestors"]) == ("'none'", "'none'")
    # /docs and /redoc need inline code: a global policy would blank them.
    docs = httpx.get(f"{server}/docs", headers=KEY)
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers


@pytest.mark.parametrize("path", ["/ui/../v1/boards", "/ui/%2e%2e/v1/boards", "/ui/..%2fv1/boards", "/ui//v1/boards"])
def test_dot_segments_under_ui_never_reach_the_api_without_the_key(server: str, path: str) -> None:
    # Sent as written (httpx would remove the dot segments): the server does not normalise them.
    host = urlsplit(server)
    connection = http.client.HTTPConnection(host.hostname or "", host.port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    # Routed to the /ui mount, whose files refuse a path out of their directory.
    assert response.status == 404, (path, response.status, body[:200])


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_the_files_hold_nothing_the_policy_would_refuse() -> None:
    for path in _files():
        text = NAMESPACE.sub("", path.read_text(encoding="utf-8"))
        assert not EXTERNAL.search(text), (path.name, EXTERNAL.findall(text))
        if path.suffix != ".html":
            continue
        parser = _Tags()
        parser.feed(text)
        for tag, attrs in parser.tags:
            assert not [name for name in attrs if name.startswith("on") or name == "style"], (path.name, tag, attrs)
            if tag == "script":  # no inline code: every script is a module loaded from the page's directory
                assert attrs.get("src") and attrs.get("type") == "module", (path.name, attrs)
        assert "<style" not in text.lower(), path.name
