"""The interactive docs (/docs, /redoc), served with their assets from the package: no CDN, no network."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

# Vendored from npm by scripts/vendor_swagger.sh; VERSION there says which packages and versions.
ASSETS_DIR = Path(__file__).with_name("static") / "docs"
ASSETS_URL = "/docs/assets"
SWAGGER_JS = f"{ASSETS_URL}/swagger-ui/swagger-ui-bundle.js"
SWAGGER_CSS = f"{ASSETS_URL}/swagger-ui/swagger-ui.css"
FAVICON = f"{ASSETS_URL}/swagger-ui/favicon-32x32.png"
REDOC_JS = f"{ASSETS_URL}/redoc/redoc.standalone.js"


def install_docs(app: FastAPI) -> None:
    """Serve /docs, its OAuth2 redirect and /redoc from local assets; the app is built with ``docs_url=None``.

    They sit behind ApiKeyMiddleware (unlike /healthz and the /ui page's files), as FastAPI's own /docs did.
    """
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    # check_dir: a wheel built without the package data fails at start, not with a blank page.
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR, check_dir=True), name="docs-assets")

    # Starlette routes, as FastAPI adds its own docs pages: they answer HEAD as well as GET.
    async def swagger_ui(_: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=redirect_url,
            swagger_js_url=SWAGGER_JS,
            swagger_css_url=SWAGGER_CSS,
            swagger_favicon_url=FAVICON,
            # Swagger UI's default validatorUrl is an online validator; never send it the document.
            swagger_ui_parameters={"validatorUrl": None},
        )

    async def swagger_ui_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(_: Request) -> HTMLResponse:
        # with_google_fonts=False: Redoc falls back to the browser's fonts instead of fetching them.
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=REDOC_JS,
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        )

    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.add_route(redirect_url, swagger_ui_redirect, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
