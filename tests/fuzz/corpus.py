"""The real configuration files in the tree, the seeds the mutation fuzzers start from.

ldirectord.cf: every ``*.cf`` under packaging/ and tests/ (the shipped example, the guide's LD1
``packaging/examples/guide.cf``, the differential test's scenarios), every fenced block of docs/*.md
holding a ``virtual=`` line and the test suite's multi-line strings that are configs; saru.toml: every
``*.toml`` under packaging/, the fenced blocks of docs/*.md and the test suite's strings that start
with a ``[section]`` of saru.toml.
"""

from __future__ import annotations

import ast
import re
import textwrap
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
_TOML_SECTIONS = ("[director]", "[ha]", "[ha.ping]", "[ipvs.sync]", "[cluster]", "[api]")


@cache
def _multiline_strings() -> tuple[str, ...]:
    """The multi-line string literals of the test suite, dedented."""
    found = []
    for path in sorted(ROOT.glob("tests/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "\n" in node.value:
                found.append(textwrap.dedent(node.value))
    return tuple(found)


def _test_strings(pattern: str) -> list[str]:
    """The test suite's multi-line strings matching ``pattern`` (the configs tests write)."""
    return [text for text in _multiline_strings() if re.search(pattern, text, re.M)]


def _doc_blocks() -> list[str]:
    return [m.group(1) for doc in sorted((ROOT / "docs").rglob("*.md")) for m in _FENCE.finditer(doc.read_text())]


@cache
def ldirectord_configs() -> tuple[tuple[str, str], ...]:
    """(name, text) of every real ldirectord.cf in the tree."""
    files = sorted([*ROOT.glob("packaging/**/*.cf"), *ROOT.glob("tests/**/*.cf")])
    found = [(str(p.relative_to(ROOT)), p.read_text()) for p in files]
    found += [(f"docs block {i}", block) for i, block in enumerate(_doc_blocks())
              if re.search(r"^virtual6?=", block, re.M)]
    found += [(f"test string {i}", text) for i, text in enumerate(_test_strings(r"^virtual6?="))]
    return tuple(found)


@cache
def toml_configs() -> tuple[tuple[str, str], ...]:
    """(name, text) of every real saru.toml in the tree."""
    found = [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted(ROOT.glob("packaging/**/*.toml"))]
    found += [(f"docs block {i}", block) for i, block in enumerate(_doc_blocks())
              if block.lstrip().startswith(_TOML_SECTIONS)]
    found += [(f"test string {i}", text) for i, text in enumerate(_test_strings(r"^\[(director|ha|api|cluster)\]"))]
    return tuple(found)
