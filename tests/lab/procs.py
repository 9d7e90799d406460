"""Stopping what a test started: one process, a batch of them, everything left in a namespace."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Any


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL (by the process's own pid)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def stop_processes(procs: Sequence[subprocess.Popen[Any]], timeout: float = 5) -> None:
    """SIGTERM all of ``procs`` at once (newest first), then ``stop_process`` each and close its pipes."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for proc in reversed(procs):
        stop_process(proc, timeout)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def signal_pid(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to ``pid``; a process already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def kill_namespace(netns: str) -> None:
    """SIGKILL every process whose network namespace is ``netns`` (``ip netns pids``)."""
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False)
    for pid in pids.stdout.split():
        with contextlib.suppress(ValueError):
            signal_pid(int(pid))
