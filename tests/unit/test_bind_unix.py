"""saru.files.bind_unix: the socket file has its mode from the moment its path exists (watched with
inotify: created, never chmod-ed after), nothing is left beside it, a bound path is not replaced."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

import pytest

from saru.files import bind_unix
from tests.helpers import Watch


@pytest.mark.parametrize("mode", [0o600, 0o660])
def test_mode_from_the_first_moment(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "api.sock"
    old = os.umask(0o022)  # what the mode would be between a bind and a chmod: 0755
    try:
        with Watch(tmp_path) as watch:
            sock = bind_unix(path, mode)
            events = [e for e in watch.events() if e[0] == path.name]
    finally:
        os.umask(old)
    with sock:
        sock.listen()
        assert events == [(path.name, "create")]  # appeared, and its mode was never changed after
        st = path.lstat()
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == mode
        assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no staging directory left
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))  # the name reaches the listening socket


def test_a_bound_path_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(str(path))
        inode = path.lstat().st_ino
        with pytest.raises(OSError) as caught:
            bind_unix(path, 0o600)
        assert caught.value.errno == errno.EADDRINUSE
        assert path.lstat().st_ino == inode
        assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
