"""Text that came from the wire, made safe to quote in a log line or a check message, and checked to be
a number before ``int`` reads it."""

from __future__ import annotations

#: longest server text quoted in a message
MAX_QUOTE = 160


def is_number(text: str) -> bool:
    """ASCII digits only: what a status code or a length on the wire may be. (``str.isdigit`` is true
    for "²" and other digits ``int`` refuses; ``int`` takes "+5", " 5" and "5_0".)"""
    return text.isascii() and text.isdigit()


def printable(text: str | bytes, limit: int = MAX_QUOTE) -> str:
    """Server text made safe for a log line: control characters as ``?``, at most ``limit`` chars."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else "?" for c in text.rstrip("\r\n"))
    return text if len(text) <= limit else text[: limit - 1] + "…"
