"""``negotiate`` for service ``http_proxy``: the real is an HTTP proxy; fetch ``request`` through it.

``request`` must be an absolute ``http://`` URL (the leading ``/`` the config front end adds is
dropped). The real receives the proxy form of the request::

    GET http://origin.example/status HTTP/1.1
    Host: origin.example
    User-Agent: saru/<version>
    Connection: close

Redirects are followed through the same proxy (LWP did the same), up to 7. Up when the final status
is 2xx and the body matches ``receive`` — the same verdict, response parser and regex translation as
the ``http`` check (``saru.checks.http``), which this module reuses. ``virtualhost`` is not used (the
Host header is the URL's, as with ldirectord). ``https://`` URLs are refused with a clear message:
ldirectord only proxied ``http`` and quietly fetched ``https`` URLs directly, bypassing the real.
"""

from __future__ import annotations

import functools
from urllib.parse import urljoin, urlsplit

from saru.checks.base import CheckFailed, register
from saru.checks.http import (
    Target,
    body_found,
    build_request,
    evaluate,
    fetch,
    follow_redirects,
    host_port,
)
from saru.checks.receive import compile_receive
from saru.model import CheckResult, CheckSpec


def proxy_target(url: str, proxy_host: str, proxy_port: int) -> Target:
    """A request for the absolute ``url`` sent to the proxy at proxy_host:proxy_port."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise CheckFailed(f"http_proxy request must be an absolute http:// URL, not '{url[:100]}'")
    try:
        port = parts.port or 80
    except ValueError:
        raise CheckFailed(f"invalid port in URL '{url[:100]}'") from None
    authority = host_port(parts.hostname, port, "http")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # the request-target is the absolute URL (proxy form); Host names the origin server
    return Target("http", proxy_host, proxy_port, f"http://{authority}{path}", authority, "", authority)


@functools.lru_cache(maxsize=4096)
def initial_request(spec: CheckSpec) -> tuple[str, Target, bytes]:
    """(method, target, request bytes) of a check, computed once per spec."""
    method = spec.httpmethod.upper()
    if spec.receive and method != "HEAD":
        compile_receive(spec.receive)
    url = spec.request[1:] if spec.request.startswith("/") else spec.request
    target = proxy_target(url, spec.address, spec.port)
    return method, target, build_request(method, target)


@register("negotiate", "http_proxy")
async def check_http_proxy(spec: CheckSpec) -> CheckResult:
    """GET/HEAD the absolute URL ``request`` through the real and match the body against ``receive``."""
    if spec.port <= 0:
        raise CheckFailed("no port to check")
    method, target, request = initial_request(spec)
    response = await fetch(target, method, request)
    response = await follow_redirects(
        response, target, method,
        lambda current, location: proxy_target(urljoin(current.path, location.strip()), spec.address, spec.port))
    return evaluate(response, spec.receive, method, await body_found(response, spec.receive, method))
