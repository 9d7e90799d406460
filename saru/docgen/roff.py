"""A small roff (man macro) writer: escaping, inline markup, and the few block macros man pages need.

Text comes from docstrings and help strings (````code````) and from Markdown (```code```,
``**bold**``, ``[text](link)``); code and bold become ``\\fB…\\fR``. Every hyphen is written ``\\-``
(Debian's man pages want option dashes that way), backslashes as ``\\e``, the few non-ASCII characters
the sources use as groff's named glyphs (which have ASCII fallbacks, so ``-Tascii`` renders them too),
and a line that would start with a control character is protected with ``\\&``. Output lines are
wrapped at ``WIDTH`` so that the committed pages diff well.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable

WIDTH = 100

#: non-ASCII characters used in the sources, as groff glyph names
GLYPHS = {
    "\u2014": r"\(em", "\u2013": r"\(en", "\u2026": "...", "\u2192": r"\(->", "\u2190": r"\(<-",
    "\u00d7": r"\(mu", "\u2212": r"\(mi", "\u2265": r"\(>=", "\u2264": r"\(<=", "\u2019": r"\(cq",
    "\u2018": r"\(oq", "\u201c": r"\(lq", "\u201d": r"\(rq", "\u00b7": r"\(pc", "\u00e9": r"\['e]",
    "\u00a0": r"\~",
}

_MARKUP = re.compile(r"``(?P<rst>.+?)``|`(?P<md>[^`]+)`|\*\*(?P<bold>.+?)\*\*|\[(?P<link>[^\]]+)\]\([^)]*\)")


def text(plain: str) -> str:
    """``plain`` escaped for roff (no markup interpreted)."""
    out = []
    for char in plain:
        if char == "\\":
            out.append(r"\e")
        elif char == "-":
            out.append(r"\-")
        elif ord(char) > 127:
            out.append(GLYPHS.get(char, f"\\[u{ord(char):04X}]"))
        else:
            out.append(char)
    return "".join(out)


def bold(plain: str) -> str:
    return rf"\fB{text(plain)}\fR"


def italic(plain: str) -> str:
    return rf"\fI{text(plain)}\fR"


def inline(marked: str) -> str:
    """Text with ````code````, ```code```, ``**bold**`` and ``[text](link)`` markup, escaped."""
    out, pos = [], 0
    for match in _MARKUP.finditer(marked):
        out.append(text(marked[pos:match.start()]))
        if match.group("link") is not None:
            out.append(inline(match.group("link")))
        else:
            out.append(bold(match.group("rst") or match.group("md") or match.group("bold")))
        pos = match.end()
    out.append(text(marked[pos:]))
    return "".join(out)


def fill(escaped: str) -> str:
    """Escaped running text as input lines: wrapped, none starting with a control character."""
    words = " ".join(escaped.split())
    wrapped = textwrap.wrap(words, WIDTH, break_long_words=False, break_on_hyphens=False) or [""]
    return "\n".join(_protect(line) for line in wrapped)


def _protect(line: str) -> str:
    return "\\&" + line if line.startswith((".", "'")) else line


def quoted(escaped: str) -> str:
    """A macro argument in double quotes."""
    return '"' + escaped.replace('"', r"\(dq") + '"'


def title(name: str, section: int, source: str, manual: str) -> str:
    """The ``.TH`` line (no date: the page changes only when its sources do), then left-adjusted,
    unhyphenated text (option names and paths must not be split)."""
    return f".TH {name} {section} \"\" {quoted(text(source))} {quoted(text(manual))}\n.nh\n.ad l"


def section(name: str) -> str:
    return f".SH {quoted(text(name))}"


def subsection(escaped: str) -> str:
    return f".SS {quoted(escaped)}"


def paragraph(escaped: str) -> str:
    return ".PP\n" + fill(escaped)


def tagged(term: str, body: str) -> str:
    """A ``.TP`` item: ``term`` (escaped, one line) over an indented ``body`` (escaped)."""
    return f".TP\n{_protect(term)}\n{fill(body)}" if body.strip() else f".TP\n{_protect(term)}\n.br"


def bullet(escaped: str) -> str:
    return ".IP \\(bu 2\n" + fill(escaped)


def example(lines: Iterable[str]) -> str:
    """Lines shown as they are (no filling), indented: a command or a file."""
    body = "\n".join(_protect(text(line)) if line else "" for line in lines)
    body = "\n".join(line if line else ".sp" for line in body.split("\n"))
    return f".PP\n.RS 4\n.nf\n{body}\n.fi\n.RE"


def prose(marked: str) -> list[str]:
    """Docstring-style text as blocks: paragraphs split at blank lines, ``* ``/``- `` lines as bullets."""
    blocks: list[str] = []
    for chunk in re.split(r"\n\s*\n", marked.strip()):
        items: list[list[str]] = []
        for line in chunk.splitlines():
            stripped = line.strip()
            if stripped.startswith(("* ", "- ")):
                items.append([stripped[2:]])
            elif items:
                items[-1].append(stripped)
            else:
                items.append([stripped])
        for i, item in enumerate(items):
            is_bullet = chunk.lstrip().startswith(("* ", "- ")) or i > 0
            blocks.append((bullet if is_bullet else paragraph)(inline(" ".join(item))))
    return blocks if marked.strip() else []


def page(*blocks: str) -> str:
    """The blocks as one page, one trailing newline."""
    return "\n".join(block for block in blocks if block) + "\n"
