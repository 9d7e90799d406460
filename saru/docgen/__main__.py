"""``python -m saru.docgen [--check] [--root DIR] [--only man|completion]``: write (or check) the
generated man pages and bash completion of the source tree DIR (default: the current directory).

``--check`` writes nothing and exits 1 naming every file that differs from what the sources give.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from saru.docgen import completion, ldirectord_page, saru_page, settings_page

#: generated file (relative to the source tree) → (group, generator taking the tree's root)
OUTPUTS: dict[str, tuple[str, Callable[[Path], str]]] = {
    "man/saru.8": ("man", lambda root: saru_page.render()),
    "man/saru-ldirectord.8": ("man", lambda root: ldirectord_page.render()),
    "man/saru.toml.5": ("man", settings_page.render),
    "completion/saru.bash": ("completion", lambda root: completion.render()),
}


def generate(root: Path, only: str | None = None) -> dict[str, str]:
    """Every generated file's expected content, by path relative to ``root``."""
    return {name: make(root) for name, (group, make) in OUTPUTS.items() if only in (None, group)}


def stale(root: Path, only: str | None = None) -> list[str]:
    """The generated files under ``root`` that are missing or differ from what the sources give."""
    out = []
    for name, text in generate(root, only).items():
        path = root / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saru.docgen", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the source tree (default: .)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a file is stale")
    parser.add_argument("--only", choices=("man", "completion"), help="one group of files")
    args = parser.parse_args(argv)
    if not (args.root / settings_page.REFERENCE).is_file():
        print(f"saru.docgen: {args.root} is not Saru's source tree (no {settings_page.REFERENCE})", file=sys.stderr)
        return 2
    if args.check:
        names = stale(args.root, args.only)
        for name in names:
            print(f"{name} is out of date: run make man completion", file=sys.stderr)
        return 1 if names else 0
    for name, text in generate(args.root, args.only).items():
        path = args.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
