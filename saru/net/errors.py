"""The one error the wire builders raise: ``PacketError``, for input they cannot encode."""

from __future__ import annotations


class PacketError(ValueError):
    """A builder was given something it cannot encode (bad MAC, wrong address family)."""
