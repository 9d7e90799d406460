"""``receive=``: ldirectord's Perl regular expressions, translated and compiled once for every check.

``perl_to_python(pattern)`` rewrites the Perl-only bits (``\\z``, ``\\Z``, ``(?<name>…)``, ``\\k<name>``);
``compile_receive(receive)`` compiles the result for searching bytes (HTTP bodies, FTP files, lines
of a simple TCP conversation: the raw data, like LWP's ``content``) and ``compile_receive_text``
for searching text (DNS answers, LDAP DNs, SQL column values). Both are cached, and an invalid
pattern is a ``CheckFailed`` saying so (checks compile before any I/O, so it fails at once).
"""

from __future__ import annotations

import functools
import re

from saru.checks.base import CheckFailed


def perl_to_python(pattern: str) -> str:
    r"""Translate the Perl-only bits of a regex: ``\z``, ``\Z``, ``(?<name>…)``, ``\k<name>``."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt == "z":
                out.append(r"\Z")
            elif nxt == "Z":
                out.append(r"(?=\n?\Z)")
            elif nxt == "k" and i + 2 < n and pattern[i + 2] in "<{'":
                close = {"<": ">", "{": "}", "'": "'"}[pattern[i + 2]]
                end = pattern.find(close, i + 3)
                if end > 0:
                    out.append(f"(?P={pattern[i + 3 : end]})")
                    i = end + 1
                    continue
                out.append(c + nxt)
            else:
                out.append(c + nxt)
            i += 2
            continue
        if pattern.startswith("(?<", i) and pattern[i + 3 : i + 4] not in ("=", "!"):
            out.append("(?P<")
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _invalid(receive: str, exc: re.error) -> CheckFailed:
    return CheckFailed(f"invalid receive pattern '{receive}': {exc}")


@functools.lru_cache(maxsize=1024)
def compile_receive(receive: str) -> re.Pattern[bytes]:
    """The compiled ``receive`` pattern for searching bytes."""
    try:
        return re.compile(perl_to_python(receive).encode("utf-8"))
    except re.error as exc:
        raise _invalid(receive, exc) from None


@functools.lru_cache(maxsize=1024)
def compile_receive_text(receive: str) -> re.Pattern[str]:
    """The compiled ``receive`` pattern for searching text."""
    try:
        return re.compile(perl_to_python(receive))
    except re.error as exc:
        raise _invalid(receive, exc) from None
