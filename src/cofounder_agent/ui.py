"""/ui: the browser page over the public API, served from the package's static files.

The page's files open without the API key (the page asks for the key itself and sends it on
every API call); their responses carry a policy that allows nothing from other origins and no
inline code. The policy is set here only, not globally: /docs and /redoc need inline code.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

UI_DIR = Path(__file__).with_name("static") / "ui"
UI_URL = "/ui"
# img-src blob: the page fetches each picture with the key header and shows it as a blob URL.
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",  # module scripts load only when served as JavaScript
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate by ETag: an upgraded server's files are picked up
}


class UiFiles(StaticFiles):
    """The page's files, each with the headers above."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def install_ui(app: FastAPI) -> None:
    """Mount the page at /ui (/ui redirects to /ui/, which serves index.html)."""
    # check_dir: a wheel built without the package data fails at start, not with a blank page.
    app.mount(UI_URL, UiFiles(directory=UI_DIR, html=True, check_dir=True), name="ui")
