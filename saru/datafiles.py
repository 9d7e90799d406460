"""Where Saru's non-Python files are: OCF agents, systemd units, man pages, bash completion, examples,
the logrotate entry and the firewalld service.

In a source checkout (and an editable install) they live in their own folders (``ocf/saru``,
``packaging/systemd``, ``man``…); a wheel carries copies under ``saru/data/<kind>/`` (``setup.py``
copies them at build time, from ``SOURCES``). ``data_dir(kind)`` finds them either way, so that a
pip-installed Saru can install its units or agents::

    python -m saru.datafiles            # every kind and its directory
    python -m saru.datafiles systemd    # one directory: cp "$(python -m saru.datafiles systemd)"/saru.service …

The Debian package installs them at their system places instead (/usr/lib/ocf/resource.d/saru,
/lib/systemd/system, /usr/share/man, …) — see docs/install.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: kind → folder of the source tree it is copied from (relative to the checkout's root)
SOURCES: dict[str, str] = {
    "ocf": "ocf/saru",
    "systemd": "packaging/systemd",
    "man": "man",
    "completion": "completion",
    "examples": "packaging/examples",
    "logrotate": "packaging/logrotate",
    "firewalld": "packaging/firewalld",
}

PACKAGE = Path(__file__).resolve().parent
#: the copies a wheel carries
INSTALLED = PACKAGE / "data"
#: the source checkout this module is in, if it is in one
CHECKOUT = PACKAGE.parent


def data_dir(kind: str) -> Path:
    """The directory holding the files of ``kind`` (a key of ``SOURCES``); ``KeyError`` for an unknown
    kind, ``FileNotFoundError`` when neither a wheel's copy nor a checkout's folder exists."""
    source = SOURCES[kind]
    for candidate in (INSTALLED / kind, CHECKOUT / source):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"Saru's {kind} files are not installed (no {INSTALLED / kind}, no {CHECKOUT / source})")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(f"usage: python -m saru.datafiles [{'|'.join(SOURCES)}]")
        return 0
    kinds = args or list(SOURCES)
    for kind in kinds:
        if kind not in SOURCES:
            print(f"unknown kind {kind!r} (choose from {', '.join(SOURCES)})", file=sys.stderr)
            return 2
        try:
            path = data_dir(kind)
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(path if len(kinds) == 1 and args else f"{kind}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
