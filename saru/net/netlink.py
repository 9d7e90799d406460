"""Netlink attributes (``struct nlattr``, include/uapi/linux/netlink.h): packing and parsing.

An attribute is a 4-byte header (total length, type; host byte order) followed by its payload and
padded to a multiple of 4 bytes. ``nla(kind, payload)`` packs one; ``parse_attrs(data, offset)`` reads
a chain of them into ``{type: payload}`` (the ``NLA_F_NESTED`` / ``NLA_F_NET_BYTEORDER`` flag bits
masked off, the last of equal types kept), stopping at the first attribute that is malformed or runs
past the end. Nested attributes are an attribute whose payload is such a chain.
"""

from __future__ import annotations

import struct

NLA_HEADER = struct.Struct("=HH")  # nla_len, nla_type
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER


def nla(kind: int, payload: bytes) -> bytes:
    """One attribute of type ``kind`` carrying ``payload``, padded to 4 bytes."""
    length = NLA_HEADER.size + len(payload)
    return NLA_HEADER.pack(length, kind) + payload + b"\0" * (-length % 4)


def parse_attrs(data: bytes | memoryview, offset: int = 0) -> dict[int, bytes]:
    """The attributes of a chain starting at ``offset``, by type number (the last one wins)."""
    out: dict[int, bytes] = {}
    end = len(data)
    while offset + NLA_HEADER.size <= end:
        length, kind = NLA_HEADER.unpack_from(data, offset)
        if length < NLA_HEADER.size or offset + length > end:
            break
        out[kind & NLA_TYPE_MASK] = bytes(data[offset + NLA_HEADER.size : offset + length])
        offset += (length + 3) & ~3
    return out
