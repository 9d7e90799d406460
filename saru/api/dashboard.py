"""The dashboard (``GET /``): one static page with its script and style sheet, served as they are.

The files live in ``saru/api/static/`` (installed with the package; no build step, no external
asset). ``load_assets()`` reads them once; ``dashboard_routes()`` gives the HTTP server its routes
(``/``, ``/index.html``, ``/app.js``, ``/style.css``), each answered with ``HEADERS``: a Content
Security Policy that allows nothing but this origin (no inline script, no third-party request),
``nosniff``, no referrer, and ``no-cache`` so that an upgraded daemon's page is fetched anew. The
page reads ``api/v1/status`` and ``api/v1/events`` and writes to ``api/v1/servers/…`` relative to its
own URL, so it works behind a reverse proxy's prefix too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).with_name("static")

#: URL path → (file in STATIC_DIR, content type)
FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}

HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    """One file of the page, read into memory."""

    body: bytes
    content_type: str


def load_assets(directory: Path = STATIC_DIR) -> dict[str, Asset]:
    """Every URL path of ``FILES`` with its file's bytes (OSError when the package lacks one)."""
    read: dict[str, bytes] = {}
    return {path: Asset(read.setdefault(name, (directory / name).read_bytes()), content_type)
            for path, (name, content_type) in FILES.items()}


def dashboard_routes(directory: Path = STATIC_DIR) -> list[web.RouteDef]:
    """GET (and HEAD) routes serving the page; the files are read once, here."""
    assets = load_assets(directory)

    def handler(asset: Asset) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def serve(request: web.Request) -> web.Response:
            content_type, _, charset = asset.content_type.partition("; charset=")
            return web.Response(body=asset.body, content_type=content_type, charset=charset or None,
                                headers=HEADERS)
        return serve

    return [web.get(path, handler(asset)) for path, asset in assets.items()]
