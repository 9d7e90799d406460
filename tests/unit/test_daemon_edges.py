"""The daemon's small parts: the journal (events logged, kept, table changes alerted), the pid file
(never another live process's), the hook runner (commands one after the other, waited for)."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest

from saru.daemon.hooks import HookRunner
from saru.daemon.journal import Journal
from saru.daemon.pidfile import remove_pidfile, write_pidfile
from saru.events import DaemonEvent, TableChange
from saru.model import Dest, ServiceKey

KEY = ServiceKey("tcp", "10.0.0.1", 80)


def test_the_journal_logs_keeps_and_alerts(caplog: pytest.LogCaptureFixture) -> None:
    alerted: list[TableChange] = []
    journal = Journal(alerted.append, keep=3)
    change = TableChange(verb="Added", kind="real", service=KEY, dest=Dest("10.1.0.1", 80, "masq"), at=0.0)
    with caplog.at_level(logging.INFO, "saru"):
        journal.emit(DaemonEvent("one", at=0.0))
        journal.emit(change)
    assert alerted == [change]
    assert [r.getMessage() for r in caplog.records] == ["one", change.message()]
    journal.record(DaemonEvent("kept, not logged"))
    journal.emit(DaemonEvent("four"))
    assert [line.split(" ", 2)[2] for line in journal.recent(10)] == [change.message(), "kept, not logged", "four"]
    assert len(journal.recent(1)) == 1 and "kept, not logged" not in caplog.text


def test_the_pid_file_is_never_another_live_process(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "run" / "saru.pid"
    assert write_pidfile(str(path)) and path.read_text() == f"{os.getpid()}\n"
    assert write_pidfile(str(path))  # our own: fine (a restart in the same process)
    other = subprocess.Popen(["sleep", "30"])
    try:
        path.write_text(f"{other.pid}\n")
        assert not write_pidfile(str(path))
        assert f"already running with pid {other.pid}" in caplog.text
        remove_pidfile(str(path))
        assert path.read_text() == f"{other.pid}\n"  # not ours: left alone
    finally:
        other.kill()
        other.wait()
    path.write_text(f"{other.pid}\n")  # a dead process's: taken over
    assert write_pidfile(str(path))
    remove_pidfile(str(path))
    assert not path.exists()


async def test_hooks_run_one_after_the_other(tmp_path: Path) -> None:
    log = tmp_path / "log"
    hooks = HookRunner()
    # the first is slower: run at the same time, the second would write first
    hooks.run_in_order(f"/bin/sh -c 'sleep 0.3; echo $0 >> {log}'", "first")
    hooks.run_in_order(f"/bin/sh -c 'echo $0 >> {log}'", "second")
    await hooks.wait()
    assert log.read_text().split() == ["first", "second"]


def test_an_emptied_pid_file_is_left_alone_on_the_way_out(tmp_path: Path) -> None:
    """Someone truncated the pid file while the daemon ran: removing it must not raise (it was an
    IndexError on shutdown) and must not delete a file that no longer names this process."""
    path = tmp_path / "saru.pid"
    assert write_pidfile(str(path))
    path.write_text("")
    remove_pidfile(str(path))
    assert path.exists()
