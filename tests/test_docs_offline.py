"""/docs and /redoc render with no network: every asset their pages load comes from the service itself."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from cofounder_agent.docs_ui import ASSETS_DIR, ASSETS_URL
from conftest import make_settings, running_server

# Any absolute or protocol-relative URL: a page that names one needs the network to render.
EXTERNAL = re.compile(r"(?:https?:)?//[\w.-]+\.\w", re.IGNORECASE)
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


class AssetLinks(HTMLParser):
    """The URLs a page loads: <script src>, <link href>, <img src>."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value]


def asset_urls(html: str) -> list[str]:
    parser = AssetLinks()
    parser.feed(html)
    return parser.urls


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # An API replica: no engine to load, the same routes and middleware as `serve`.
    settings = make_settings(tmp_path_factory.mktemp("docs"))
    with running_server(settings, embedded_worker=False) as url:
        yield url


def fetch_local_assets(base: str, html: str, headers: dict[str, str] | None = None) -> dict[str, httpx.Response]:
    """Fetch every asset the page names from the service; all must be same-origin paths."""
    urls = asset_urls(html)
    assert urls, html
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    fetched = {url: httpx.get(f"{base}{url}", headers=headers) for url in urls}
    for url, response in fetched.items():
        assert response.status_code == 200, url
        assert response.headers["content-type"].startswith(MEDIA_TYPES[Path(url).suffix]), url
        assert len(response.content) > 500, url
        # Byte for byte the vendored file (tests below tie those to the npm packages).
        assert response.content == (ASSETS_DIR / url.removeprefix(f"{ASSETS_URL}/")).read_bytes(), url
    return fetched


def test_docs_loads_swagger_ui_and_the_document_from_the_service(server: str) -> None:
    page = httpx.get(f"{server}/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "cdn.jsdelivr" not in page.text and not EXTERNAL.search(page.text), EXTERNAL.findall(page.text)
    fetched = fetch_local_assets(server, page.text)
    bundle = fetched[f"{ASSETS_URL}/swagger-ui/swagger-ui-bundle.js"]
    assert len(bundle.content) > 1_000_000 and b"SwaggerUIBundle" in bundle.content  # the real bundle
    assert f"{ASSETS_URL}/swagger-ui/swagger-ui.css" in fetched
    # The document the page asks for, and the OAuth2 redirect it names.
    spec_url = re.search(r"url: '([^']+)'", page.text)
    assert spec_url is not None and spec_url.group(1) == "/openapi.json"
    spec = httpx.get(f"{server}{spec_url.group(1)}")
    assert spec.status_code == 200 and "/v1/jobs" in spec.json()["paths"]
    assert "window.location.origin + '/docs/oauth2-redirect'" in page.text
    redirect = httpx.get(f"{server}/docs/oauth2-redirect")
    assert redirect.status_code == 200 and "oauth2" in redirect.text
    assert not EXTERNAL.search(redirect.text)


def test_redoc_loads_its_bundle_from_the_service_and_no_fonts(server: str) -> None:
    page = httpx.get(f"{server}/redoc")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not EXTERNAL.search(page.text), EXTERNAL.findall(page.text)  # fonts.googleapis.com included
    assert '<redoc spec-url="/openapi.json">' in page.text
    fetched = fetch_local_assets(server, page.text)
    assert len(fetched[f"{ASSETS_URL}/redoc/redoc.standalone.js"].content) > 500_000


def test_the_pages_answer_head_stay_out_of_the_document_and_a_missing_asset_is_a_404(server: str) -> None:
    # HEAD wherever GET, as FastAPI's own docs pages did (link checkers and probes send it).
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect", f"{ASSETS_URL}/swagger-ui/swagger-ui.css"):
        assert httpx.head(f"{server}{path}").status_code == 200, path
    paths = httpx.get(f"{server}/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]
    missing = httpx.get(f"{server}{ASSETS_URL}/swagger-ui/nothing.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"]


def test_with_an_api_key_the_pages_and_assets_need_it(tmp_path: Path) -> None:
    # Like the API itself: only /healthz and the /ui page's files are open (tests/test_ui_static.py).
    settings = make_settings(tmp_path, image_api_key="s3cret")
    key = {"X-API-Key": "s3cret"}
    with running_server(settings, embedded_worker=False) as base:
        asset = f"{ASSETS_URL}/swagger-ui/swagger-ui.css"
        for path in ("/docs", "/redoc", asset):
            assert httpx.get(f"{base}{path}").status_code == 401, path
        page = httpx.get(f"{base}/docs", headers=key)
        assert page.status_code == 200
        assert asset in fetch_local_assets(base, page.text, headers=key)


def test_the_vendored_files_are_the_ones_version_records() -> None:
    """VERSION (scripts/vendor_swagger.sh) lists every vendored file with its sha256, and only those."""
    lines = re.findall(r"^([0-9a-f]{64})  (\S+)$", (ASSETS_DIR / "VERSION").read_text(), re.MULTILINE)
    recorded = {path: digest for digest, path in lines}
    on_disk = {str(path.relative_to(ASSETS_DIR)) for path in ASSETS_DIR.rglob("*") if path.is_file()}
    assert set(recorded) == on_disk - {"VERSION"}
    for path, digest in recorded.items():
        assert hashlib.sha256((ASSETS_DIR / path).read_bytes()).hexdigest() == digest, path
    # Each package ships its license beside its files.
    assert {"swagger-ui/LICENSE", "swagger-ui/NOTICE", "redoc/LICENSE"} <= set(recorded)
