"""The block structure of the project's Markdown documents: headings, paragraphs, lists, fenced code
and tables — enough to turn docs/settings.md into a man page and to read the commands the guides show.
Inline markup is left in the text (``saru.docgen.roff.inline`` renders it)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Code:
    info: str  # what follows the opening fence (``sh``, ``toml``, or nothing)
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


Block = Heading | Paragraph | Bullets | Code | Table

_BULLET = re.compile(r"^\s*(?:[-*]|\d+\.)\s+")


def blocks(text: str) -> list[Block]:
    """The blocks of a Markdown document, in order."""
    out: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
            out.append(Code(line[3:].strip(), tuple(lines[i + 1:end])))
            i = end + 1
        elif line.startswith("#"):
            marks = len(line) - len(line.lstrip("#"))
            out.append(Heading(marks, line[marks:].strip()))
            i += 1
        elif line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            body = [row for row in rows[1:] if not all(re.fullmatch(r":?-+:?", cell) for cell in row)]
            out.append(Table(rows[0], tuple(body)))
        else:
            chunk = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("```", "#")) \
                    and not lines[i].lstrip().startswith("|"):
                chunk.append(lines[i])
                i += 1
            out.extend(_paragraph_or_list(chunk))
    return out


def _cells(line: str) -> tuple[str, ...]:
    inner = line.strip().removeprefix("|").removesuffix("|")
    return tuple(cell.strip() for cell in re.split(r"(?<!\\)\|", inner))


def _paragraph_or_list(chunk: list[str]) -> list[Block]:
    if not _BULLET.match(chunk[0]):
        return [Paragraph(" ".join(line.strip() for line in chunk))]
    items: list[list[str]] = []
    for line in chunk:
        if _BULLET.match(line):
            items.append([_BULLET.sub("", line)])
        else:
            items[-1].append(line.strip())
    return [Bullets(tuple(" ".join(item) for item in items))]
