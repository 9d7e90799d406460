"""API and metrics names of virtual services and real servers, written once (pure).

A virtual service is a ``proxy`` (HAProxy's word, so PROMEX dashboards map with one relabel):
``tcp/ADDR:PORT``, ``udp/ADDR:PORT`` or ``fwmark/N``, with IPv6 addresses in brackets
(``tcp/[2001:db8::1]:80``). A real server is a ``server``: ``ADDR:PORT`` or ``[ADDR]:PORT``.
An IPv6 firewall-mark service is ``fwmark/N`` too; ``parse_proxy`` returns the mark and leaves the
family to the caller (a config holding both families of one mark is ambiguous, and the caller says so).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from saru.model import ServiceKey, format_hostport, split_hostport


class BadName(ValueError):
    """A proxy or server name that does not parse; ``str()`` says why."""


@dataclass(frozen=True)
class ProxyName:
    """A parsed ``proxy``: protocol (``tcp``/``udp``/``fwm``) and address/port or mark."""

    protocol: str
    address: str = ""
    port: int = 0
    fwmark: int | None = None

    def matches(self, key: ServiceKey) -> bool:
        if self.protocol == "fwm":
            return key.protocol == "fwm" and key.fwmark == self.fwmark
        return (key.protocol, key.address, key.port) == (self.protocol, self.address, self.port)


def proxy_name(key: ServiceKey) -> str:
    """``tcp/10.0.0.1:80``, ``udp/[2001:db8::1]:53``, ``fwmark/7``."""
    if key.protocol == "fwm":
        return f"fwmark/{key.fwmark}"
    return f"{key.protocol}/{format_hostport(key.address, key.port)}"


def server_name(address: str, port: int) -> str:
    """``10.0.0.2:80`` or ``[2001:db8::2]:80``."""
    return format_hostport(address, port)


def _hostport(text: str, what: str) -> tuple[str, int]:
    parts = split_hostport(text)
    if parts is None:
        expected = "[IPv6]:PORT" if text.startswith("[") else "ADDRESS:PORT (IPv6 in brackets)"
        raise BadName(f"{what} {text!r}: expected {expected}")
    host, port_text, _ = parts
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise BadName(f"{what} {text!r}: {host!r} is not an IP address") from None
    if (":" in host) != (address.version == 6) or (text.startswith("[") and address.version != 6):
        raise BadName(f"{what} {text!r}: expected ADDRESS:PORT (IPv6 in brackets)")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise BadName(f"{what} {text!r}: port must be a number 0-65535")
    return str(address), int(port_text)


def parse_proxy(text: str) -> ProxyName:
    """``tcp/ADDR:PORT`` | ``udp/ADDR:PORT`` | ``fwmark/N`` → ProxyName; BadName otherwise."""
    if not isinstance(text, str) or not text:
        raise BadName("proxy must be a non-empty string like tcp/10.0.0.1:80 or fwmark/7")
    kind, sep, rest = text.partition("/")
    if not sep:
        raise BadName(f"proxy {text!r}: expected tcp/ADDR:PORT, udp/ADDR:PORT or fwmark/N")
    if kind == "fwmark":
        if not rest.isdigit() or not 0 < int(rest) < 2**32:
            raise BadName(f"proxy {text!r}: the firewall mark must be a number 1-4294967295")
        return ProxyName("fwm", fwmark=int(rest))
    if kind not in ("tcp", "udp"):
        raise BadName(f"proxy {text!r}: protocol must be tcp, udp or fwmark")
    address, port = _hostport(rest, "proxy")
    return ProxyName(kind, address, port)


def parse_server(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` / ``[ADDR]:PORT`` → (address, port); BadName otherwise."""
    if not isinstance(text, str) or not text:
        raise BadName("server must be a non-empty string like 10.0.0.2:80")
    return _hostport(text, "server")
