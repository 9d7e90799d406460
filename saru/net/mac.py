"""Ethernet (48-bit) MAC addresses: text to bytes and back, as ``ip link`` writes them."""

from __future__ import annotations

from saru.net.errors import PacketError

BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6


def mac_bytes(mac: str | bytes) -> bytes:
    """``"02:00:5e:00:01:01"`` (``-`` separators too, any case; or 6 bytes) -> 6 bytes; ``PacketError``
    otherwise."""
    if isinstance(mac, bytes):
        raw = mac
    else:
        parts = mac.replace("-", ":").split(":")
        try:
            raw = bytes(int(p, 16) for p in parts) if len(parts) == 6 and all(len(p) in (1, 2) for p in parts) \
                else b""
        except ValueError:
            raw = b""
    if len(raw) != 6:
        raise PacketError(f"{mac!r} is not an Ethernet (48-bit) MAC address")
    return raw


def mac_str(raw: bytes) -> str:
    """6 bytes -> ``"02:00:5e:00:01:01"`` (lower case, like ``ip link``)."""
    return ":".join(f"{b:02x}" for b in raw)


def normal_mac(mac: str) -> str:
    """A MAC written any accepted way, in ``mac_str``'s form; ``PacketError`` if it is not one."""
    return mac_str(mac_bytes(mac.strip().lower()))
