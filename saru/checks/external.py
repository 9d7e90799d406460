"""``external`` and ``external-perl`` checks: a program decides whether a real is up.

Both run ``<program> <vip|fwmark> <vport> <rip> <rport>`` (ldirectord's four arguments; IPv6
addresses in brackets as ldirectord passes them) and take exit status 0 as up:

* ``external``: ``checkcommand`` is split shell-style (``shlex``) and exec'd **without a shell**;
  ldirectord exec'd the whole string as one program name, so a command with arguments never ran
  (a string that names an executable file as a whole is still run as that one program).
* ``external-perl``: the file is run by the system's ``perl`` in a child process
  (``perl <file> <args>``), where ldirectord eval'd it inside the daemon (as root, cached forever).

The child runs in its own process group with stdin from /dev/null. On timeout the whole group gets
SIGTERM at once and SIGKILL after a short grace (in the background, so the check's latency stays
the timeout); processes the command left behind after exiting are ended the same way. stdout and
stderr are drained (only their last few KiB kept) and the last line of stderr is added to the
failure message.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
from dataclasses import dataclass

from saru.checks.base import CheckFailed, format_seconds, register
from saru.model import CheckResult, CheckSpec

KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL of a timed-out process group
OUTPUT_CAP = 8192  # bytes of stdout/stderr kept (the tail)
DRAIN_AFTER_EXIT = 0.2  # seconds to collect output still in the pipes after the command exited
MESSAGE_CAP = 200  # characters of stderr quoted in a failure message

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


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def check_arguments(spec: CheckSpec) -> list[str]:
    """ldirectord's ``<vip|fwmark> <vport> <rip> <rport>``."""
    return [_bracket(spec.virtual_address), str(spec.virtual_port), _bracket(spec.address), str(spec.port)]


def command_argv(checkcommand: str) -> list[str]:
    """``checkcommand`` split shell-style (quotes honoured, nothing expanded, no shell run).

    A string that names an executable file as a whole is that program (ldirectord's reading, so a
    path with spaces keeps working)."""
    if " " in checkcommand and os.path.isfile(checkcommand) and os.access(checkcommand, os.X_OK):
        return [checkcommand]
    try:
        argv = shlex.split(checkcommand)
    except ValueError as exc:
        raise CheckFailed(f"invalid checkcommand: {exc}") from None
    if not argv:
        raise CheckFailed("empty checkcommand")
    return argv


def last_line(data: bytes) -> str:
    """The last non-blank line of some output, decoded and shortened for a message."""
    for line in reversed(data.decode("utf-8", "replace").splitlines()):
        line = line.strip()
        if line:
            return line if len(line) <= MESSAGE_CAP else line[: MESSAGE_CAP - 1] + "…"
    return ""


def describe_outcome(outcome: Outcome, timeout: float) -> tuple[bool, str]:
    """(up, message) for a finished command."""
    if outcome.returncode is None:
        text = f"timeout after {format_seconds(timeout)}s"
    elif outcome.returncode == 0:
        return True, "exit status 0"
    elif outcome.returncode < 0:
        try:
            name = signal.Signals(-outcome.returncode).name
        except ValueError:
            name = f"signal {-outcome.returncode}"
        text = f"killed by {name}"
    else:
        text = f"exit status {outcome.returncode}"
    detail = last_line(outcome.stderr)
    return False, f"{text}: {detail}" if detail else text


async def _drain(stream: asyncio.StreamReader | None, keep: bytearray) -> None:
    """Read a pipe to its end, keeping only its last OUTPUT_CAP bytes."""
    if stream is None:
        return
    while chunk := await stream.read(65536):
        keep += chunk
        if len(keep) > OUTPUT_CAP:
            del keep[: len(keep) - OUTPUT_CAP]


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
            loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
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


async def _finish_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the group now, SIGKILL whatever is left of it after ``grace`` seconds."""
    pgid = process.pid
    if _signal_group(pgid, signal.SIGTERM):
        step = 0.05
        for _ in range(max(1, round(grace / step))):  # poll the group, up to ``grace``
            if not _signal_group(pgid, 0):
                break
            await asyncio.sleep(step)
        _signal_group(pgid, signal.SIGKILL)
    await wait_exit(process)


def end_group(process: asyncio.subprocess.Process, grace: float = KILL_GRACE) -> None:
    """End a command's process group in the background (SIGTERM now, SIGKILL after ``grace``)."""
    task = asyncio.get_running_loop().create_task(_finish_group(process, grace))
    _REAPERS.add(task)
    task.add_done_callback(_REAPERS.discard)


async def run_command(argv: list[str], timeout: float, grace: float = KILL_GRACE) -> Outcome:
    """Exec ``argv`` (no shell) in its own process group; kill the group after ``timeout`` seconds."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # own session and process group: pgid == pid
        )
    except FileNotFoundError:
        raise CheckFailed(f"cannot execute {argv[0]}: no such file") from None
    except PermissionError:
        raise CheckFailed(f"cannot execute {argv[0]}: permission denied") from None
    except OSError as exc:
        raise CheckFailed(f"cannot execute {argv[0]}: {os.strerror(exc.errno or 0).lower()}") from None
    out, err = bytearray(), bytearray()
    readers = [asyncio.ensure_future(_drain(process.stdout, out)),
               asyncio.ensure_future(_drain(process.stderr, err))]
    returncode: int | None = None
    try:
        try:
            returncode = await asyncio.wait_for(wait_exit(process), timeout)
        except TimeoutError:
            pass
        if returncode is not None:
            # output still in the pipes; a leftover child holding them open must not delay us
            await asyncio.wait(readers, timeout=DRAIN_AFTER_EXIT)
    finally:  # timeout, cancellation (the caller's own timeout) or normal exit
        for reader in readers:
            reader.cancel()
        end_group(process, grace)  # also ends processes the command left behind
    return Outcome(returncode, bytes(out), bytes(err))


async def _run(argv: list[str], spec: CheckSpec) -> CheckResult:
    outcome = await run_command(argv + check_arguments(spec), spec.checktimeout)
    ok, message = describe_outcome(outcome, spec.checktimeout)
    return CheckResult(ok=ok, message=message)


@register("external")
async def check_external(spec: CheckSpec) -> CheckResult:
    """Run ``checkcommand <vip|fwmark> <vport> <rip> <rport>``; exit status 0 = up."""
    return await _run(command_argv(spec.checkcommand), spec)


def perl_path() -> str | None:
    """The system's perl interpreter, if installed."""
    return shutil.which("perl") or (os.access("/usr/bin/perl", os.X_OK) and "/usr/bin/perl") or None


@register("external-perl")
async def check_external_perl(spec: CheckSpec) -> CheckResult:
    """Run the Perl file ``checkcommand`` with the system's perl in a child process; exit 0 = up."""
    perl = perl_path()
    if perl is None:
        raise CheckFailed("checktype external-perl needs perl, which is not installed")
    return await _run([perl, "--", spec.checkcommand], spec)  # perl reports a missing file
