"""``maintenancedir``: a file named after a real forces it down, whatever its check says.

The names, in ldirectord's order: ``ip:port``, ``ip``, ``fqdn:port``, ``fqdn``, ``short:port``,
``short`` (IPv6 addresses in brackets). The reverse lookup for the names is done asynchronously and
cached (``NameCache``; ldirectord resolved synchronously before every check), and only when a file
in the directory could be named by a host name.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time

MAINTENANCE_MESSAGE = "Server in maintenance"
NAME_TTL = 300.0  # seconds a reverse lookup is cached
NAME_WAIT = 1.0  # longest a check waits for a cold reverse lookup (it goes on in the background)

_SHORT = re.compile(r"^([a-z][a-z0-9\-]+)\.")


def maintenance_names(address: str, port: int, fqdn: str | None = None) -> list[str]:
    """File names that put a real in maintenance, in ldirectord's order (IPv6 in brackets)."""
    rip = f"[{address}]" if ":" in address and not address.startswith("[") else address
    names = [f"{rip}:{port}", rip]
    if fqdn:
        names += [f"{fqdn}:{port}", fqdn]
        short = _SHORT.match(fqdn)
        if short:
            names += [f"{short.group(1)}:{port}", short.group(1)]
    return names


def _looks_like_ip(name: str) -> bool:
    """Whether a maintenance file is named by address (then no reverse lookup can matter)."""
    if name.startswith("["):
        host = name[: name.find("]") + 1]
    else:
        host = name.split(":", 1)[0]
    return bool(re.fullmatch(r"[\d.]+|\[[0-9a-fA-F:.]+\]", host))


class NameCache:
    """Reverse DNS (address → FQDN) resolved in the background and cached for ``ttl`` seconds."""

    def __init__(self, ttl: float = NAME_TTL) -> None:
        self.ttl = ttl
        self._names: dict[str, tuple[str | None, float]] = {}
        self._pending: dict[str, asyncio.Future[str | None]] = {}

    async def lookup(self, address: str, wait: float = NAME_WAIT) -> str | None:
        """The cached name; a stale entry is refreshed in the background, a cold one awaited ≤ wait."""
        cached = self._names.get(address)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        future = self._pending.get(address)
        if future is None:
            future = asyncio.ensure_future(self._resolve(address))
            self._pending[address] = future
        if cached is not None:
            return cached[0]
        try:
            return await asyncio.wait_for(asyncio.shield(future), wait)
        except TimeoutError:
            return None

    def close(self) -> None:
        """Cancel lookups still in flight."""
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()

    async def _resolve(self, address: str) -> str | None:
        loop = asyncio.get_running_loop()
        sockaddr: tuple[str, int] | tuple[str, int, int, int] = (
            (address, 0, 0, 0) if ":" in address else (address, 0)
        )
        try:
            name: str | None = (await loop.getnameinfo(sockaddr, socket.NI_NAMEREQD))[0]
        except (OSError, UnicodeError):
            name = None
        finally:
            self._pending.pop(address, None)
        self._names[address] = (name, time.monotonic() + self.ttl)
        return name


async def in_maintenance(directory: str, address: str, port: int, names: NameCache) -> bool:
    """Whether a maintenance file for this real exists (reverse lookup only when it could matter)."""
    try:
        entries = set(os.listdir(directory))
    except OSError:
        return False
    if not entries:
        return False
    if any(name in entries for name in maintenance_names(address, port)):
        return True
    if all(_looks_like_ip(entry) for entry in entries):
        return False
    fqdn = await names.lookup(address.strip("[]"))
    return bool(fqdn) and any(name in entries for name in maintenance_names(address, port, fqdn)[2:])


def address_in_maintenance(directory: str, address: str, port: int) -> bool:
    """Whether a maintenance file named by this real's address exists (no lookup, no await)."""
    names = maintenance_names(address, port)
    return any(os.path.exists(os.path.join(directory, name)) for name in names)
