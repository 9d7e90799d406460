"""Detach a daemon from its caller, and tell the caller when the daemon is ready or why it failed.

``run_detached(body)`` forks twice (``setsid`` in between, ``chdir /``, stdin/stdout on
``/dev/null``) and runs ``body(channel)`` in the grandchild. The calling process waits and returns:

* ``0`` once the grandchild calls ``channel.ready()`` (for the director: the table is programmed);
* the grandchild's exit status when ``body`` returns before ``ready()`` (a start-up error), or 1 if
  that status is 0 (stopping before being ready is not a successful start);
* ``1`` when the grandchild dies without saying either (killed, crashed), or is not ready within
  ``timeout`` seconds — it is then sent SIGTERM and given ``stop_grace`` seconds to exit.

Until ``ready()`` the grandchild's standard error is a pipe to the caller, which copies it to its
own standard error, so start-up errors reach whoever ran the command; afterwards it is
``/dev/null``. ``channel.log(line)`` keeps log lines in the caller (the last ``keep``), printed only
if the start fails. The status channel is a second pipe, line-framed (``pid N``, ``log …``,
``ready``, ``exit N``), that only the grandchild holds, so processes the daemon spawns while starting
cannot keep the caller waiting. The caller must not have started threads or an event loop before
calling (``fork`` semantics).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


class Channel:
    """The grandchild's end: ``ready()`` once, ``log(line)`` before that."""

    def __init__(self, status_w: int, devnull: int) -> None:
        self._fd = status_w
        self._devnull = devnull
        self.told = False

    def _send(self, line: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self._fd, line.replace("\n", " ").encode(errors="replace") + b"\n")

    def log(self, line: str) -> None:
        if not self.told:
            self._send(f"log {line}")

    def ready(self) -> None:
        if self.told:
            return
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        self._send("ready")
        self.told = True
        with contextlib.suppress(OSError):
            os.close(self._fd)
        os.dup2(self._devnull, 2)  # the caller has gone: later output must not block on its pipe

    def exit(self, code: int) -> None:
        if not self.told:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            self._send(f"exit {code}")


def run_detached(body: Callable[[Channel], int], *, stderr: BinaryIO | None = None, prog: str = "saru",
                 timeout: float | None = None, stop_grace: float = 30.0, keep: int = 20) -> int:
    """Run ``body(channel)`` as a detached daemon; return in the caller as described above.

    ``prog`` prefixes the caller's own messages (``<prog>: the daemon died during start-up``)."""
    out = stderr if stderr is not None else sys.stderr.buffer
    status_r, status_w = os.pipe()
    err_r, err_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:  # first child: new session, fork again so the daemon can never get a terminal
        code = 1
        try:
            os.close(status_r)
            os.close(err_r)
            os.setsid()
            if os.fork() == 0:
                _grandchild(body, status_w, err_w)  # does not return
            code = 0
        finally:
            os._exit(code)
    os.close(status_w)
    os.close(err_w)
    os.waitpid(child, 0)
    waiter = _Waiter(status_r, err_r, out, prog, keep)
    try:
        return waiter.wait(timeout, stop_grace)
    finally:
        os.close(status_r)
        os.close(err_r)


def _grandchild(body: Callable[[Channel], int], status_w: int, err_w: int) -> None:
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(err_w, 2)
    os.close(err_w)
    channel = Channel(status_w, devnull)
    channel._send(f"pid {os.getpid()}")
    code = 1
    try:
        code = int(body(channel) or 0)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # the caller must learn why we died
        traceback.print_exc()
        code = 1
    finally:
        logging.shutdown()
        channel.exit(code)
        os._exit(code)


def gone(pid: int) -> bool:
    """The process has exited (a zombie counts as exited: its parent may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] in (["Z"], ["X"])


class _Waiter:
    """The caller's end: copies stderr, keeps log lines, reads the status lines."""

    def __init__(self, status_r: int, err_r: int, out: BinaryIO, prog: str, keep: int) -> None:
        self.status_r, self.err_r, self.out, self.prog = status_r, err_r, out, prog
        self.logs: deque[str] = deque(maxlen=keep)
        self.pid: int | None = None
        self.outcome: str | None = None  # "ready", "exit N", or "" for EOF
        self._partial = b""

    def wait(self, timeout: float | None, stop_grace: float) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.status_r, selectors.EVENT_READ)
            sel.register(self.err_r, selectors.EVENT_READ)
            while self.outcome is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return self._timed_out(timeout or 0.0, stop_grace)
                for key, _ in sel.select(left):
                    data = os.read(key.fd, 65536)
                    if key.fd == self.err_r:
                        if data:
                            self._write(data)
                        else:
                            sel.unregister(self.err_r)
                    else:
                        self._status(data)
        self._drain_stderr()
        return self._verdict()

    def _status(self, data: bytes) -> None:
        if not data:
            self.outcome = ""
            return
        self._partial += data
        *lines, self._partial = self._partial.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            kind, _, rest = line.partition(" ")
            if kind == "pid":
                with contextlib.suppress(ValueError):
                    self.pid = int(rest)
            elif kind == "log":
                self.logs.append(rest)
            elif kind in ("ready", "exit") and self.outcome is None:
                self.outcome = line

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.out.flush()

    def _drain_stderr(self) -> None:
        """What the daemon wrote just before its status line."""
        os.set_blocking(self.err_r, False)
        with contextlib.suppress(BlockingIOError, OSError):
            while data := os.read(self.err_r, 65536):
                self.out.write(data)
        self.out.flush()

    def _say(self, message: str) -> None:
        text = f"{self.prog}: {message}\n"
        if self.logs:
            text += "".join(f"  {line}\n" for line in self.logs)
        self._write(text.encode())

    def _verdict(self) -> int:
        if self.outcome == "ready":
            return 0
        if self.outcome and self.outcome.startswith("exit "):
            try:
                code = int(self.outcome[5:])
            except ValueError:
                code = 1
            if code != 0:
                if self.logs:
                    self._say(f"the daemon exited with status {code}; its last log lines:")
                return code
            self._say("the daemon stopped before it was ready")
            return 1
        self._say("the daemon died during start-up")
        return 1

    def _timed_out(self, timeout: float, stop_grace: float) -> int:
        self._drain_stderr()
        what = f"pid {self.pid}" if self.pid else "the daemon"
        self._say(f"{what} was not ready within {timeout:g}s; stopping it. Its last log lines:")
        self.logs.clear()
        if self.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + stop_grace
            while not gone(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not gone(self.pid):
                self._say(f"pid {self.pid} did not exit within {stop_grace:g}s of SIGTERM")
        return 1
