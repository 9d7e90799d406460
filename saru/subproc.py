"""Running external programs: exec'd without a shell, in a session of their own, bounded in time and output.

``run_command(argv, timeout)`` starts ``argv`` directly (no shell: nothing in it is ever interpreted)
with stdin from /dev/null (or ``input`` fed to it), in a new session (its own process group, so the
command and every child it starts can be signalled as one), and returns an ``Outcome``: the exit status
(negative: killed by that signal; ``None``: timed out) and the last ``OUTPUT_CAP`` bytes of stdout and
stderr (both always drained, so a chatty program never blocks on a full pipe).

On timeout, and when the caller is cancelled, the **whole process group** is ended: SIGTERM, then
SIGKILL after ``grace`` seconds (``grace=0``: SIGKILL at once). ``end_leftovers`` ends the group the
same way after a normal exit too (processes the command left behind). The call returns once the group
is gone, unless ``background_kill``: then a background task finishes it, so that the caller's latency
stays the timeout (the health checks). The exit is seen as soon as the process exits (a pidfd), even
while a leftover child still holds its pipes open; the runner then lets go of its ends of the pipes
(``release``), so a leftover costs no descriptors and no transport outlives its event loop.

A program that cannot be started raises ``OSError`` (``FileNotFoundError``, ``PermissionError``…) for
the caller to word.

The user a command runs as: ``run_as`` (a ``RunAs``), else the process-wide one the daemon sets at start
with ``set_command_user`` (saru.toml ``[director] command_user``, see ``saru.daemon.privileges``).
It is applied by the exec itself (``user=``, ``group=``, ``extra_groups=``; ``HOME``, ``USER`` and
``LOGNAME`` set to that user's) — only when this process may switch (its effective uid is 0) and the
user is not itself already; a daemon that is that user (the shipped unit) applies nothing.

Users: ``checks/external.py`` (``external``, ``external-perl``), ``hooks.py``
(``callback``, ``fallbackcommand``), ``ha/node.py`` (notify commands) and ``alerts.py`` (sendmail).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL of a process group
OUTPUT_CAP = 8192  # bytes of stdout/stderr kept (the tail)
DRAIN_AFTER_EXIT = 0.2  # seconds to collect output still in the pipes after the command exited
MESSAGE_CAP = 200  # characters of output quoted by ``last_line``



@dataclass(frozen=True)
class RunAs:
    """A user commands run as: uid, primary gid, supplementary groups, home directory."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    home: str = "/"

    @classmethod
    def lookup(cls, name: str) -> RunAs:
        """The user ``name`` from the passwd and group databases; ``KeyError`` if there is none."""
        entry = pwd.getpwnam(name)
        try:
            groups = tuple(g for g in os.getgrouplist(entry.pw_name, entry.pw_gid) if g != entry.pw_gid)
        except OSError:
            groups = ()
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir or "/")

    def exec_options(self) -> dict[str, Any]:
        """``create_subprocess_exec`` keywords that make the child this user; ``{}`` when this process
        cannot switch users (not root) or already is this user."""
        if os.geteuid() != 0 or (os.getuid() == self.uid and os.getgid() == self.gid):
            return {}
        env = dict(os.environ, HOME=self.home, USER=self.name, LOGNAME=self.name)
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups), "env": env}


#: the user commands run as when the caller names none (``set_command_user``); None: this process's own
_COMMAND_USER: RunAs | None = None


def set_command_user(run_as: RunAs | None) -> None:
    """Make ``run_as`` the user of every command started without an explicit ``run_as``."""
    global _COMMAND_USER
    _COMMAND_USER = run_as


def command_user() -> RunAs | None:
    """The user commands run as by default (None: this process's own)."""
    return _COMMAND_USER


#: background tasks that finish killing process groups (kept referenced until done)
_REAPERS: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class Outcome:
    """How a command ended: exit status (negative: killed by that signal), or None on timeout."""

    returncode: int | None
    stdout: bytes
    stderr: bytes

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def last_line(data: bytes) -> str:
    """The last non-blank line of some output, decoded and shortened for a message."""
    for line in reversed(data.decode("utf-8", "replace").splitlines()):
        line = line.strip()
        if line:
            return line if len(line) <= MESSAGE_CAP else line[: MESSAGE_CAP - 1] + "…"
    return ""


async def _drain(stream: asyncio.StreamReader | None, keep: bytearray) -> None:
    """Read a pipe to its end, keeping only its last OUTPUT_CAP bytes."""
    if stream is None:
        return
    while chunk := await stream.read(65536):
        keep += chunk
        if len(keep) > OUTPUT_CAP:
            del keep[: len(keep) - OUTPUT_CAP]


async def _feed(stream: asyncio.StreamWriter | None, data: bytes) -> None:
    """Write ``data`` to the command's stdin and close it (a command that stops reading is no error)."""
    if stream is None:
        return
    try:
        stream.write(data)
        await stream.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        stream.close()


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists (or is not ours)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def wait_exit(process: asyncio.subprocess.Process) -> int:
    """The exit status as soon as the process exits.

    ``Process.wait()`` (Python 3.11) only returns once every pipe is closed too, i.e. never while a
    child the command left behind holds stdout open; a pidfd tells the exit itself.
    """
    loop = asyncio.get_running_loop()
    if process.returncode is None:
        try:
            fd = os.pidfd_open(process.pid)
        except (AttributeError, OSError):
            fd = -1  # no pidfd (or already reaped): poll below
        if fd >= 0:
            exited: asyncio.Future[None] = loop.create_future()

            def readable() -> None:
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(fd, readable)
            try:
                await exited
            finally:
                loop.remove_reader(fd)
                os.close(fd)
    for _ in range(1000):  # asyncio's child watcher reaps it a moment later
        if process.returncode is not None:
            return process.returncode
        await asyncio.sleep(0.005)
    return await process.wait()


async def end_group(process: asyncio.subprocess.Process, grace: float = KILL_GRACE) -> None:
    """End a command's process group: SIGTERM now and SIGKILL whatever is left after ``grace`` seconds
    (``grace`` <= 0: SIGKILL at once); returns once the command itself has been reaped."""
    pgid = process.pid  # a session leader: its process group has its pid
    try:
        if grace > 0 and _signal_group(pgid, signal.SIGTERM):
            step = 0.05
            for _ in range(max(1, round(grace / step))):  # poll the group, up to ``grace``
                if not _signal_group(pgid, 0):
                    break
                await asyncio.sleep(step)
        _signal_group(pgid, signal.SIGKILL)
        await wait_exit(process)
    finally:  # also when cancelled (the event loop ending): the group killed, the pipes let go
        if process.returncode is None:
            _signal_group(pgid, signal.SIGKILL)
        release(process)


def release(process: asyncio.subprocess.Process) -> None:
    """Close this process's end of the command's pipes once it is done with them: a child the command
    left behind may hold them open for as long as it lives, and asyncio closes a subprocess's transport
    only when every pipe has ended — until then it costs two descriptors, and a transport still open
    when its event loop closes is closed later by the garbage collector, on a closed loop ("Event loop
    is closed"). (``Process`` offers no public way to close its transport; a command not yet reaped
    is killed by it.)"""
    transport = getattr(process, "_transport", None)
    if transport is not None:
        transport.close()


def end_group_later(process: asyncio.subprocess.Process, grace: float = KILL_GRACE) -> None:
    """``end_group`` in a background task (kept referenced until it is done)."""
    task = asyncio.get_running_loop().create_task(end_group(process, grace))
    _REAPERS.add(task)
    task.add_done_callback(_REAPERS.discard)


async def run_command(argv: Sequence[str], timeout: float, *, input: bytes | None = None,
                      grace: float = KILL_GRACE, end_leftovers: bool = False,
                      background_kill: bool = False, run_as: RunAs | None = None) -> Outcome:
    """Exec ``argv`` (no shell) in its own session, as ``run_as`` (default: ``command_user()``); end its
    process group after ``timeout`` seconds (see the module docstring). ``OSError`` if it cannot be
    started."""
    user = run_as if run_as is not None else _COMMAND_USER
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL if input is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # own session and process group: pgid == pid
        **(user.exec_options() if user is not None else {}),
    )
    out, err = bytearray(), bytearray()
    pipes = [asyncio.ensure_future(_drain(process.stdout, out)),
             asyncio.ensure_future(_drain(process.stderr, err))]
    if input is not None:
        pipes.append(asyncio.ensure_future(_feed(process.stdin, input)))
    returncode: int | None = None
    try:
        try:
            returncode = await asyncio.wait_for(wait_exit(process), timeout)
        except TimeoutError:
            pass
        if returncode is not None:
            # output still in the pipes; a leftover child holding them open must not delay us
            await asyncio.wait(pipes, timeout=DRAIN_AFTER_EXIT)
    finally:  # timeout, cancellation (the caller's own timeout) or normal exit
        for pipe in pipes:
            pipe.cancel()
        # after an exit only a group that still has members (what the command left) needs ending
        if returncode is None or (end_leftovers and _signal_group(process.pid, 0)):
            if background_kill:
                end_group_later(process, grace)
            else:
                await end_group(process, grace)
        else:
            release(process)  # exited; what it left behind keeps running, without our pipes
    return Outcome(returncode, bytes(out), bytes(err))
