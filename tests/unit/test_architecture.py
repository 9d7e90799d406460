"""The dependency rules of docs/architecture.md, checked on the code (every import, also inside
functions and under TYPE_CHECKING), and the doc naming every package and top-level module.

A new import that points the wrong way (the model importing the daemon, the wire code importing a
check, anything but the command line importing ``saru.cli``) fails here; if the design really
changes, change the table below and the doc together.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SARU = ROOT / "saru"

#: top-level part of saru → the parts it may import (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "model": set(),
    "net": set(),
    "subproc": set(),
    "caps": set(),  # capabilities of this process and of the programs it starts
    "files": set(),  # files written where others may write: no symbolic link followed
    "sdnotify": set(),  # the systemd notify protocol, used by the daemon
    "datafiles": set(),  # where the package's data files (units, man pages…) are installed
    "config": {"model"},
    "planner": {"model"},
    "diff": {"model"},
    "drift": {"model", "diff"},
    "checks": {"model", "config", "net", "subproc"},
    "compat": {"model", "dataplane"},  # dataplane.base's types; the IPVS plane words errors with compat
    "dataplane": {"model", "net", "diff", "compat", "caps"},
    "events": {"model", "checks", "net", "subproc", "files"},
    "monitor": {"model", "checks", "events"},
    "ha": {"model", "events", "net", "subproc"},
    "bgp": {"model", "subproc", "files", "caps"},  # announce decisions (pure) and the routing daemons' drivers
    "control": {"model", "files"},
    "cluster": {"model", "config"},
    "setup": {"model", "net", "ha", "dataplane", "config", "subproc"},  # subproc: saru doctor asks firewalld
    "daemon": {"model", "config", "checks", "monitor", "events", "planner", "diff", "drift",
               "dataplane", "ha", "bgp", "control", "subproc", "compat", "cluster", "api", "net", "sdnotify", "caps",
               "files"},
    "api": {"model", "config", "checks", "events", "daemon", "control", "compat", "net", "ha", "planner", "files"},
    "demo": {"model", "config", "daemon", "control", "api", "cli"},
    "docgen": {"cli", "config", "model"},
    "cli": {"*"},
    "__main__": {"cli"},
}


def _part(path: Path) -> str:
    rel = path.relative_to(SARU)
    return rel.parts[0].removesuffix(".py")


def _is_part(name: str) -> bool:
    """A package or module of saru (``from saru import __version__`` names neither)."""
    return (SARU / name).is_dir() or (SARU / f"{name}.py").exists()


def _imported_parts(path: Path) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "saru" else [f"saru.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "saru" and len(parts) > 1 and _is_part(parts[1]):
                found.add((parts[1], node.lineno))
    return found


def test_imports_point_the_way_the_architecture_says() -> None:
    wrong = []
    for path in sorted(SARU.rglob("*.py")):
        if path.parent == SARU and path.name == "__init__.py":
            continue
        part = _part(path)
        allowed = ALLOWED.get(part)
        assert allowed is not None, f"{path.relative_to(ROOT)}: part {part!r} is not in the architecture table"
        for target, line in _imported_parts(path):
            if target != part and "*" not in allowed and target not in allowed:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {part} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_nothing_but_the_command_line_imports_it() -> None:
    users = {part for part, allowed in ALLOWED.items() if "cli" in allowed or "*" in allowed}
    assert users == {"cli", "docgen", "demo", "__main__"}


def test_the_architecture_doc_names_every_package_and_top_level_module() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    missing = [f"saru/{p.name}" for p in sorted(SARU.iterdir())
               if ((p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py")
               and not p.name.startswith("__") and f"saru/{p.name.removesuffix('.py')}" not in doc
               and f"saru/{p.name}" not in doc]
    assert not missing, f"docs/architecture.md does not name: {missing}"
