"""The dashboard's files: served by a real aiohttp server with their types and a strict Content
Security Policy, referencing nothing outside the daemon, and writing no server text as HTML."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from saru.api.dashboard import FILES, HEADERS, STATIC_DIR, dashboard_routes, load_assets


def code_only(js: str) -> str:
    """The script without its comments (which may name what the code avoids)."""
    js = re.sub(r"/\*.*?\*/", "", js, flags=re.S)
    return re.sub(r"(?m)(^|\s)//\s.*$", "", js)


def test_every_file_exists_and_the_page_loads_only_its_own_files():
    assets = load_assets()
    assert set(assets) == set(FILES)
    html = (STATIC_DIR / "index.html").read_text()
    referenced = set(re.findall(r'(?:src|href)="([^"]*)"', html))
    assert referenced == {"style.css", "app.js", "data:,"}, referenced
    for name in ("index.html", "app.js", "style.css"):
        text = (STATIC_DIR / name).read_text()
        # no external asset: no absolute or protocol-relative URL, no CSS import or web font
        assert not re.search(r"https?://|(?<![:\w])//[\w.-]+\.\w", text.replace("/*", "").replace("*/", "")), name
        assert "@import" not in text and "@font-face" not in text, name


def test_script_never_writes_server_text_as_html_and_keeps_the_token_out_of_cookies():
    js = code_only((STATIC_DIR / "app.js").read_text())
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
    assert "document.cookie" not in js and "localStorage" not in js
    assert "sessionStorage" in js


async def test_served_with_types_and_a_policy_that_allows_only_this_origin():
    app = web.Application()
    app.add_routes(dashboard_routes())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for path, (name, content_type) in FILES.items():
            response = await client.get(path)
            assert response.status == 200, path
            assert response.headers["Content-Type"] == content_type
            assert await response.read() == (STATIC_DIR / name).read_bytes()
            for header, value in HEADERS.items():
                assert response.headers[header] == value
        csp = HEADERS["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
        head = await client.head("/")
        assert head.status == 200
        assert (await client.get("/missing.js")).status == 404
        assert (await client.post("/")).status == 405
