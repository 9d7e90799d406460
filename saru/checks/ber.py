"""A minimal BER codec (X.690, definite lengths only): enough of it for LDAPv3 health checks.

Encoding builds TLVs from bytes; decoding splits a buffer into ``(tag, content)`` pairs. All pure
functions; malformed input raises :class:`BerError` (a ``ValueError``).
"""

from __future__ import annotations

from collections.abc import Iterator

# universal tags
BOOLEAN = 0x01
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
ENUMERATED = 0x0A
SEQUENCE = 0x30

#: largest element we accept (a health check never needs more; protects memory)
MAX_LENGTH = 1 << 20


class BerError(ValueError):
    """Malformed or unsupported BER input."""


# --------------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------------


def encode_length(length: int) -> bytes:
    """Definite length: short form below 128, long form otherwise."""
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes = b"") -> bytes:
    """One element: a single-byte tag (low tag numbers only), its length and its content."""
    if not 0 <= tag <= 0xFF or tag & 0x1F == 0x1F:
        raise BerError(f"unsupported tag {tag:#x}")
    return bytes([tag]) + encode_length(len(content)) + content


def encode_integer(value: int, tag: int = INTEGER) -> bytes:
    """A two's-complement INTEGER (or ENUMERATED with ``tag=ENUMERATED``) in the fewest bytes."""
    size = max(1, (value + (value < 0)).bit_length() // 8 + 1)
    return tlv(tag, value.to_bytes(size, "big", signed=True))


def encode_boolean(value: bool, tag: int = BOOLEAN) -> bytes:
    return tlv(tag, b"\xff" if value else b"\x00")


def encode_octets(value: bytes | str, tag: int = OCTET_STRING) -> bytes:
    """An OCTET STRING (str is encoded as UTF-8, as LDAP strings are)."""
    return tlv(tag, value.encode("utf-8") if isinstance(value, str) else value)


def encode_sequence(*items: bytes, tag: int = SEQUENCE) -> bytes:
    """A constructed element holding the already-encoded ``items``."""
    return tlv(tag, b"".join(items))


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------


def header_size(data: bytes | bytearray, offset: int = 0) -> tuple[int, int] | None:
    """(header length, content length) of the element at ``offset``; None if more bytes are needed."""
    if len(data) - offset < 2:
        return None
    if data[offset] & 0x1F == 0x1F:
        raise BerError("multi-byte tags are not supported")
    first = data[offset + 1]
    if first < 0x80:
        return 2, first
    count = first & 0x7F
    if count == 0:
        raise BerError("indefinite lengths are not supported")
    if count > 4:
        raise BerError("element too long")
    if len(data) - offset < 2 + count:
        return None
    length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
    if length > MAX_LENGTH:
        raise BerError(f"element of {length} bytes is too long")
    return 2 + count, length


def element_size(data: bytes | bytearray, offset: int = 0) -> int | None:
    """Total size of the element starting at ``offset``, or None while it is incomplete."""
    header = header_size(data, offset)
    if header is None:
        return None
    size = header[0] + header[1]
    return size if len(data) - offset >= size else None


def decode(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """(tag, content, offset after the element) of the element at ``offset``."""
    header = header_size(data, offset)
    if header is None:
        raise BerError("truncated element header")
    start = offset + header[0]
    end = start + header[1]
    if end > len(data):
        raise BerError("truncated element")
    return data[offset], data[start:end], end


def children(content: bytes) -> Iterator[tuple[int, bytes]]:
    """The ``(tag, content)`` elements that make up a constructed element's content."""
    offset = 0
    while offset < len(content):
        tag, value, offset = decode(content, offset)
        yield tag, value


def decode_integer(content: bytes) -> int:
    """The value of an INTEGER or ENUMERATED content."""
    if not content:
        raise BerError("empty integer")
    return int.from_bytes(content, "big", signed=True)
