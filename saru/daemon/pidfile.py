"""The pid file: written at start unless a live process other than this one is named in it, and
removed on the way out only while it still names this process."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from saru.files import UnsafeFile, write_file

LOGGER = logging.getLogger("saru")


def write_pidfile(path: str) -> bool:
    """Write this process's pid to ``path``; False (logged) when another live process holds it or it
    cannot be written."""
    try:
        other = int(Path(path).read_text().split()[0])
        os.kill(other, 0)
        if other != os.getpid():
            LOGGER.error("already running with pid %s (pid file %s)", other, path)
            return False
    except (OSError, ValueError, IndexError):
        pass
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_file(path, f"{os.getpid()}\n")  # never through a symbolic link planted at the name
    except UnsafeFile as exc:
        LOGGER.error("cannot write pid file %s", exc)
        return False
    except OSError as exc:
        LOGGER.error("cannot write pid file %s: %s", path, exc.strerror)
        return False
    return True


def remove_pidfile(path: str) -> None:
    """Remove ``path`` if it names this process (never another daemon's)."""
    with contextlib.suppress(OSError, ValueError, IndexError):  # unreadable, garbage or empty: not ours
        if int(Path(path).read_text().split()[0]) == os.getpid():
            try:
                Path(path).unlink()
            except PermissionError:  # a dropped daemon's pid file in root's directory: empty it instead
                write_file(path, "")
