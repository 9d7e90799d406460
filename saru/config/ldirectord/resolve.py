"""Name look-ups done while reading ldirectord.cf: host names, service names, the local host name.

ldirectord resolves every name once, when it reads the file (getaddrinfo, first address of the
requested family; getservbyname).  ``SystemResolver`` does the same with the C library; tests and
fuzzers pass their own ``Resolver`` so that parsing never touches the network.
"""

from __future__ import annotations

import os
import socket
from typing import Protocol


class Resolver(Protocol):
    """What the parser needs from the outside world."""

    def host(self, name: str, family: int) -> str | None:
        """First address (text, IPv6 without brackets) of ``name`` in family 4 or 6, or None."""

    def service(self, name: str, protocol: str | None) -> int | None:
        """Port of service ``name`` for ``tcp``/``udp`` (None: any protocol), or None."""

    def hostname(self) -> str:
        """The local host name (ldirectord's ``$HOSTNAME``: the environment variable, else uname)."""


class SystemResolver:
    """The C library's resolver, with a per-instance cache (each name is looked up once)."""

    def __init__(self) -> None:
        self._hosts: dict[tuple[str, int], str | None] = {}
        self._services: dict[tuple[str, str | None], int | None] = {}

    def host(self, name: str, family: int) -> str | None:
        key = (name, family)
        if key not in self._hosts:
            self._hosts[key] = _getaddrinfo(name, family)
        return self._hosts[key]

    def service(self, name: str, protocol: str | None) -> int | None:
        key = (name, protocol)
        if key not in self._services:
            try:
                self._services[key] = (
                    socket.getservbyname(name, protocol) if protocol else socket.getservbyname(name)
                )
            except (OSError, UnicodeError):
                self._services[key] = None
        return self._services[key]

    def hostname(self) -> str:
        return os.environ.get("HOSTNAME") or os.uname().nodename


def _getaddrinfo(name: str, family: int) -> str | None:
    af = socket.AF_INET6 if family == 6 else socket.AF_INET
    try:
        infos = socket.getaddrinfo(name, None, af, socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return None
    for info in infos:
        if info[0] == af:
            return str(info[4][0]).split("%", 1)[0]
    return None
