"""The test tree follows the rule docs/testing.md states: folders by tier, shared harness in support modules.

Tiers (what a test needs to run): unit, integration, kernel, vm, ha, cluster, bgp, packaging, fuzz, soak. Support,
used by more than one tier: ``tests/lab/`` (network namespaces), ``tests/servers/`` (protocol servers),
``tests/helpers.py``, ``tests/director.py`` and ``tests/browser.py`` (headless Chromium). A tier imports support
and its own folder, never another tier; support never imports a tier; only ``tests/lab`` creates network namespaces
(the VM guest, a machine of its own, and the packaging tier's booted container, whose namespaces go with it, aside).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
TIERS = {"unit", "integration", "kernel", "vm", "ha", "cluster", "bgp", "packaging", "fuzz", "soak"}
SUPPORT = {"lab", "servers", "helpers", "director", "browser"}
TOP_FILES = {"__init__.py", "conftest.py", "helpers.py", "director.py", "browser.py"}
NETNS_ADD = re.compile(r'"netns",\s*"add"|\bip netns add\b')


def python_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def place(path: Path) -> str:
    """The tier or support part a file belongs to (``helpers`` for tests/helpers.py …)."""
    first = path.relative_to(TESTS).parts[0]
    return first.removesuffix(".py")


def imports_of(path: Path) -> set[str]:
    """The parts of ``tests`` that ``path`` imports (``from tests.lab.guide import …`` → ``lab``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "tests" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_top_level_holds_only_tiers_and_support() -> None:
    entries = {p.name for p in TESTS.iterdir() if p.name != "__pycache__" and not p.name.startswith(".")}
    folders = TIERS | {s for s in SUPPORT if (TESTS / s).is_dir()}
    assert entries == folders | TOP_FILES


def test_every_test_module_is_in_a_tier() -> None:
    stray = [str(p.relative_to(TESTS)) for p in TESTS.rglob("test_*.py") if place(p) not in TIERS]
    assert stray == []


def test_no_tier_imports_another_tier_and_support_imports_no_tier() -> None:
    wrong = []
    for path in python_files():
        here = place(path)
        allowed = SUPPORT | ({here} if here in TIERS else set())
        wrong += [f"{path.relative_to(TESTS)} imports tests.{part}" for part in sorted(imports_of(path) - allowed)]
    assert wrong == []


def test_only_the_lab_creates_network_namespaces() -> None:
    guest = TESTS / "vm" / "guest"
    inside_a_container = {TESTS / "packaging" / "test_bgp.py"}  # its namespace is made in the nspawn container
    makers = [str(p.relative_to(TESTS)) for p in python_files()
              if NETNS_ADD.search(p.read_text()) and place(p) != "lab" and not p.is_relative_to(guest)
              and p not in inside_a_container]
    assert makers == []
