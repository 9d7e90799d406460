"""Lexical layer of the ldirectord.cf reader: lines, comments, indentation, ``name=value``, quotes.

Rules (see docs/configuration.md, "Lexical rules"):

* a line whose first non-blank character is ``#`` is a comment, wherever it is;
* a line starting with a space or a tab belongs to the current ``virtual`` section;
* inside a section any ``#`` outside double quotes starts a comment (as in ldirectord, which strips
  ``#.*`` there); on a column-0 line a ``#`` outside double quotes starts a comment when it is preceded
  by white space (``classify``), or anywhere for directives whose value cannot contain ``#`` (decided
  by the caller: ldirectord keeps ``#`` in global values, so ``emailalertfrom=a#b@c`` still works);
* trailing white space and a trailing carriage return are ignored.

Everything here is pure; problems are reported by raising ``Problem`` with a user-facing message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

LineKind = Literal["blank", "comment", "global", "block"]

_BLANKS = " \t\r\n\f\v"
_DIRECTIVE = re.compile(r"([A-Za-z0-9_-]+)\s*(?:=\s*(.*))?")


class Problem(Exception):
    """A user-facing message about one line; the caller attaches file and line number."""


@dataclass(frozen=True)
class Line:
    """One physical line of the file, classified."""

    number: int
    kind: LineKind
    body: str  # comment-stripped, trimmed text ("" for blank/comment lines)
    raw: str


def split_lines(text: str) -> list[str]:
    """The physical lines of ``text`` (``\\n`` separated; a final newline does not add a line)."""
    if not text:
        return []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return lines


def strip_comment(text: str, anywhere: bool) -> str:
    """``text`` up to its comment; ``#`` inside double quotes never starts one."""
    if "#" not in text:  # most lines: no character-by-character walk
        return text
    in_quote = False
    for i, ch in enumerate(text):
        if ch == '"':
            in_quote = not in_quote
        elif ch == "#" and not in_quote and (anywhere or i == 0 or text[i - 1] in " \t"):
            return text[:i]
    return text


def classify(number: int, raw: str) -> Line:
    """Classify one physical line (see the module docstring for the rules)."""
    text = raw.rstrip(_BLANKS)
    stripped = text.lstrip(_BLANKS)
    if not stripped:
        return Line(number, "blank", "", raw)
    if stripped.startswith("#"):
        return Line(number, "comment", "", raw)
    if text[0] in " \t":
        return Line(number, "block", strip_comment(stripped, anywhere=True).rstrip(_BLANKS), raw)
    return Line(number, "global", strip_comment(text, anywhere=False).rstrip(_BLANKS), raw)


def split_directive(body: str) -> tuple[str, str | None]:
    """``name = value`` → ``(name, value)``; a bare word gives ``(word, None)``."""
    m = _DIRECTIVE.fullmatch(body)
    if not m:
        word = re.match(r"[^\s=]*", body)
        near = word.group(0) if word and word.group(0) else body
        if re.match(r"(passw|secret)", body, re.IGNORECASE):  # ``passwd "x"``: the line holds a secret
            raise Problem(f'syntax error in a {near.rstrip(":")} line: expected directive=value (the line is not '
                          "shown: it may hold a secret)")
        raise Problem(f'syntax error at "{clip(body)}": expected directive=value (near "{clip(near)}")')
    return m.group(1), (m.group(2).strip(_BLANKS) if m.group(2) is not None else None)


#: directives whose value is a password: error messages never quote it (docs/security.md)
SECRET_DIRECTIVES = frozenset({"passwd", "secret"})


def shown(value: str, name: str) -> str:
    """``value`` for an error message about directive ``name``: clipped, or hidden for a secret."""
    return "(the value is not shown: a secret)" if name in SECRET_DIRECTIVES else clip(value)


def quoted(value: str, name: str, example: str) -> str:
    """The text between the double quotes of a value that must be quoted (``request="..."``)."""
    if not value.startswith('"'):
        raise Problem(f'{name} must be in double quotes, e.g. {name}="{example}" (got {shown(value, name)})')
    return _between_quotes(value, name)


def optionally_quoted(value: str, name: str) -> str:
    """A value that may be written bare or in double quotes."""
    if value.startswith('"'):
        return _between_quotes(value, name)
    return value


def _between_quotes(value: str, name: str) -> str:
    end = value.rfind('"')
    if end == 0:
        raise Problem(f"{name}: missing closing double quote in {shown(value, name)}")
    if end != len(value) - 1:
        after = shown(value[end + 1 :].strip(), name)
        raise Problem(f'{name}: unexpected text "{after}" after the closing double quote'
                      if name not in SECRET_DIRECTIVES else f"{name}: unexpected text after the closing double quote")
    return value[1:end]


def clip(text: str, width: int = 80) -> str:
    """Shorten text for an error message."""
    return text if len(text) <= width else text[: width - 3] + "..."
