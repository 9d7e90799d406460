"""Files the daemon writes where others may write too: no symbolic link followed, directories checked.

A configuration may put the monitor file, the log file, the maintenance directory or a pid file in a
directory other users can write (``/tmp``, a shared directory). There, another user can plant a
symbolic link at the name the daemon is about to open, and a daemon running as root (or as ``saru``)
would append to, or truncate, whatever the link points at. So the daemon opens those files with
``O_NOFOLLOW`` (the last component of the path is never a link: ``UnsafeFile`` instead) and only if
they are regular files.

Its own runtime directory (control socket, instance lock, pid file) must be one no one else controls:
``private_dir`` refuses a directory that is a symbolic link, is owned by another user (root excepted)
or can be written by group or others — e.g. ``/tmp/saru-UID`` made beforehand by someone else
(``saru.control.paths``' last fallback). ``dir_problem`` is also the client's check before it talks to
a socket there.

``bind_unix`` makes a listening unix socket whose file has its mode from the first moment its path
exists (the control socket, the API's ``unix:`` socket).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import tempfile
from pathlib import Path


class UnsafeFile(OSError):
    """A path the daemon refuses to use (``str()`` says which and why)."""

    def __init__(self, path: str | os.PathLike[str], why: str) -> None:
        super().__init__(errno.EPERM, f"{os.fspath(path)}: {why}")
        self.filename = os.fspath(path)
        self.why = why

    def __str__(self) -> str:
        return f"{self.filename}: {self.why}"


def _open(path: str | os.PathLike[str], flags: int, mode: int) -> int:
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(path, "is a symbolic link; refused (another user may have planted it: use a "
                                   "directory only the daemon's user can write)") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeFile(path, "is not a regular file; refused")
    os.set_blocking(fd, True)
    return fd


def open_append(path: str | os.PathLike[str], mode: int = 0o644) -> int:
    """A descriptor appending to the regular file ``path`` (created with ``mode``); ``UnsafeFile`` when
    it is a symbolic link or not a regular file, ``OSError`` otherwise."""
    return _open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)


def write_file(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> None:
    """Replace the content of the regular file ``path`` (created with ``mode``) by ``text``; ``UnsafeFile``
    when it is a symbolic link or not a regular file (nothing written)."""
    fd = _open(path, os.O_WRONLY | os.O_CREAT, mode)  # truncated only once known to be a regular file
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.truncate(0)
        handle.write(text)


def dir_problem(path: Path) -> str:
    """Why the directory ``path`` may be controlled by another user ('' when it cannot): it is a
    symbolic link; group or others can write it (unless it is sticky, like /tmp: there no one can
    remove or replace another user's file); or it sits in a directory others can write (/tmp) and is
    owned by neither this user nor root — someone made it first. A directory owned by another user in
    a directory only root can write (``/run/saru`` handed over to ``saru``) was made by root: trusted."""
    try:
        st = path.lstat()
        parent = path.parent.stat()
    except OSError:
        return ""  # no such directory: using it fails with its own error
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        return f"can be written by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    if parent.st_mode & 0o002 and st.st_uid not in (os.geteuid(), 0):
        return f"is owned by uid {st.st_uid}, not by this user ({os.geteuid()}), in a directory everyone can write"
    return ""


def private_dir(path: Path) -> None:
    """Make ``path`` (mode 0700, parents as needed) or check the existing one cannot be controlled by
    another user (``dir_problem``); ``UnsafeFile`` when it can (nothing created in it)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    problem = dir_problem(path)
    if problem:
        raise UnsafeFile(path, f"{problem}; refused as the daemon's runtime directory (another user may have "
                               "made it: remove it, or set SARU_RUNTIME_DIR)")


def bind_unix(path: str | os.PathLike[str], mode: int) -> socket.socket:
    """A stream socket bound at ``path`` (not yet listening) whose file has ``mode`` from the moment
    ``path`` exists: bound in a fresh directory beside it that only this user can enter (mode 0700),
    given ``mode`` there, then hard-linked to ``path`` — which, unlike ``rename``, fails with
    ``EADDRINUSE`` instead of replacing a socket another process bound there meanwhile.

    Not ``bind`` then ``chmod``: between the two the socket has the umask's mode. Not the umask
    around ``bind`` either: it is the process's, and other threads (``asyncio.to_thread`` workers
    writing logs and state, starting checks) would create their files with it meanwhile. Not
    ``fchmod``: on Linux a socket descriptor's mode is not its file's."""
    path = os.fspath(path)
    staging = tempfile.mkdtemp(prefix=".saru-bind-", dir=os.path.dirname(path) or ".")
    staged = os.path.join(staging, "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(staged)
        os.chmod(staged, mode)
        try:
            os.link(staged, path)
        except FileExistsError as exc:
            raise OSError(errno.EADDRINUSE, f"{path}: address already in use") from exc
    except BaseException:
        sock.close()
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
        os.rmdir(staging)
    return sock
