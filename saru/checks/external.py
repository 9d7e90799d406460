"""``external`` and ``external-perl`` checks: a program decides whether a real is up.

Both run ``<program> <vip|fwmark> <vport> <rip> <rport>`` (ldirectord's four arguments; IPv6
addresses in brackets as ldirectord passes them) and take exit status 0 as up:

* ``external``: ``checkcommand`` is split shell-style (``shlex``) and exec'd **without a shell**;
  ldirectord exec'd the whole string as one program name, so a command with arguments never ran
  (a string that names an executable file as a whole is still run as that one program).
* ``external-perl``: the file is run by the system's ``perl`` in a child process
  (``perl <file> <args>``), where ldirectord eval'd it inside the daemon (as root, cached forever).

The child is run by ``saru.subproc``: its own process group, stdin from /dev/null. On timeout the
whole group gets SIGTERM at once and SIGKILL after a short grace (in the background, so the check's
latency stays the timeout); processes the command left behind after exiting are ended the same way.
stdout and stderr are drained (only their last few KiB kept) and the last line of stderr is added to
the failure message.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal

from saru import subproc
from saru.checks.base import CheckFailed, format_seconds, register
from saru.model import CheckResult, CheckSpec
from saru.subproc import Outcome, last_line


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


async def run_command(argv: list[str], timeout: float) -> Outcome:
    """``saru.subproc.run_command`` for a check: leftovers ended too, the group killed in the background
    (the check's latency stays the timeout); a program that cannot start is a ``CheckFailed``."""
    try:
        return await subproc.run_command(argv, timeout, end_leftovers=True, background_kill=True)
    except FileNotFoundError:
        raise CheckFailed(f"cannot execute {argv[0]}: no such file") from None
    except PermissionError:
        raise CheckFailed(f"cannot execute {argv[0]}: permission denied") from None
    except OSError as exc:
        raise CheckFailed(f"cannot execute {argv[0]}: {os.strerror(exc.errno or 0).lower()}") from None


async def _run(argv: list[str], spec: CheckSpec) -> CheckResult:
    outcome = await run_command(argv + check_arguments(spec), spec.checktimeout)
    ok, message = describe_outcome(outcome, spec.checktimeout)
    # the command's own timeout is a timeout, like run_check's (whichever of the two fires first)
    return CheckResult(ok=ok, message=message, failure="timeout" if outcome.returncode is None else "")


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
