"""``saru.toml(5)``: generated from docs/settings.md, the settings reference, and the example file.

docs/settings.md is the single source: its introduction becomes DESCRIPTION, every ``## `[section]` ``
heading a subsection of SETTINGS, every ``key | default | meaning`` table row an entry, and
packaging/examples/saru.toml the EXAMPLE. ``documented_keys`` reads the same tables for the test that
holds them against the keys ``saru.config.native`` accepts.
"""

from __future__ import annotations

import re
from pathlib import Path

from saru import __version__
from saru.docgen import markdown, roff

REFERENCE = Path("docs/settings.md")
EXAMPLE = Path("packaging/examples/saru.toml")

SEE_ALSO = "saru(8), saru-ldirectord(8), ldirectord(8)"


def render(root: Path) -> str:
    """The page, from the reference and example under the source tree ``root``."""
    blocks = markdown.blocks((root / REFERENCE).read_text(encoding="utf-8"))
    example = (root / EXAMPLE).read_text(encoding="utf-8").splitlines()
    title = next(b.text for b in blocks if isinstance(b, markdown.Heading) and b.level == 1)
    first_section = next(i for i, b in enumerate(blocks) if isinstance(b, markdown.Heading) and b.level == 2)
    name_line = re.sub(r"^saru\.toml\s*[—-]\s*", "", title)
    return roff.page(
        roff.title("SARU.TOML", 5, f"saru {__version__}", "File Formats"),
        roff.section("NAME"),
        f"saru.toml \\- {roff.inline(name_line)}",
        roff.section("DESCRIPTION"),
        *(_render(block) for block in blocks[:first_section] if not isinstance(block, markdown.Heading)),
        roff.section("SETTINGS"),
        *(_render(block) for block in blocks[first_section:]),
        roff.section("EXAMPLE"),
        roff.paragraph(roff.inline(f"The guide's first director (``{EXAMPLE}`` in Saru's source):")),
        roff.example(example),
        roff.section("SEE ALSO"),
        roff.fill(roff.text(SEE_ALSO)),
    )


def _render(block: markdown.Block) -> str:
    if isinstance(block, markdown.Heading):
        return roff.subsection(roff.inline(block.text))
    if isinstance(block, markdown.Paragraph):
        return roff.paragraph(roff.inline(block.text))
    if isinstance(block, markdown.Bullets):
        return "\n".join(roff.bullet(roff.inline(item)) for item in block.items)
    if isinstance(block, markdown.Code):
        return roff.example(block.lines)
    return "\n".join(_row(block.header, row) for row in block.rows)


def _row(header: tuple[str, ...], row: tuple[str, ...]) -> str:
    """A table row as an entry: ``key (default: …)`` over its meaning."""
    cells = dict(zip(header, row, strict=False))
    if set(cells) >= {"key", "default", "meaning"}:
        default = cells["default"]
        term = roff.inline(cells["key"])
        if default == "required":
            term += " (required)"
        elif default not in ("—", ""):
            term += f" (default: {roff.inline(default)})"
        return roff.tagged(term, roff.inline(cells["meaning"]))
    return roff.tagged(roff.inline(row[0]), roff.inline("; ".join(row[1:])))


def documented_keys(text: str) -> dict[str, set[str]]:
    """``{"ha.ping": {"hosts", …}, …}``: the keys each ``[section]`` of the reference lists, with the
    sections themselves as keys of their parents (``""`` for the top level)."""
    keys: dict[str, set[str]] = {"": set()}
    current: str | None = None
    for block in markdown.blocks(text):
        if isinstance(block, markdown.Heading):
            match = re.match(r"`\[([\w.]+)\]`", block.text)
            current = match.group(1) if match else None
            if current is not None:
                keys.setdefault(current, set())
                parts = current.split(".")
                for depth in range(len(parts)):
                    keys.setdefault(".".join(parts[:depth]), set()).add(parts[depth])
        elif isinstance(block, markdown.Table) and current is not None and "key" in block.header:
            column = block.header.index("key")
            for row in block.rows:
                keys[current].update(re.findall(r"`([\w.]+)`", row[column]))
    return keys
