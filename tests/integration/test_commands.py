"""External commands run through saru.subproc with real processes: the runner itself, the HA notify
commands and the config's hooks. A command past its timeout goes with every child it started."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from saru.daemon.hooks import run_hook
from saru.events import Event, HAProblem
from saru.ha.node import HANode, NodeState
from saru.model import HASettings
from saru.subproc import OUTPUT_CAP, run_command
from tests.helpers import process_gone, wait_process_gone

T = TypeVar("T")

#: a command that starts two children and then waits for them (forever, for the test's purposes);
#: it writes its own pid and the children's to the file named by $1
FAMILY = 'sleep 100 & echo $! >> "$1"; sleep 100 & echo $! >> "$1"; echo $$ >> "$1"; wait'


def written_pids(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def pids_in(path: Path, count: int, timeout: float = 5.0) -> list[int]:
    """The pids the command wrote to ``path``, once all ``count`` are there (polled, with a deadline)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        lines = written_pids(path)
        if len(lines) >= count:
            return [int(pid) for pid in lines]
        await asyncio.sleep(0.02)
    raise AssertionError(f"the command did not start its {count} processes in {timeout}s")


def kill_all(pids: list[int]) -> None:
    """Clean up after a failed test: nothing it started may outlive it."""
    for pid in pids:
        if not process_gone(pid):
            os.kill(pid, signal.SIGKILL)


async def all_gone(pids: list[int], deadline: float) -> bool:
    return all([await wait_process_gone(pid, deadline) for pid in pids])


# ---- HA notify commands (the regression: they used to be left running on timeout) ----------------


async def test_a_notify_command_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    events: list[Event] = []

    async def set_active(active: bool) -> None:
        pass

    node = HANode(HASettings(notify_master=("sh", "-c", FAMILY, "sh", str(pidfile))), set_active=set_active,
                  emit=events.append)
    node.notify_timeout = 0.5
    node._run_notify(NodeState.MASTER)
    pids = await pids_in(pidfile, 3)
    try:
        assert await all_gone(pids, deadline=5.0), "the notify command or its children survived the timeout"
        await asyncio.wait(node._notify, timeout=5)
        assert [e.text for e in events if isinstance(e, HAProblem)] == ["notify command sh killed after 0.5s"]
    finally:
        kill_all(pids)


async def test_a_failing_notify_command_is_reported_with_its_last_stderr_line(tmp_path: Path) -> None:
    events: list[Event] = []

    async def set_active(active: bool) -> None:
        pass

    node = HANode(HASettings(notify=("sh", "-c", 'echo "no route to $1" >&2; exit 3', "sh")),
                  set_active=set_active, emit=events.append)
    node._run_notify(NodeState.BACKUP)
    await asyncio.wait(node._notify, timeout=5)
    assert [e.text for e in events if isinstance(e, HAProblem)] == [
        "notify command sh exited with status 3: no route to backup"]


# ---- hooks (callback, fallbackcommand) ------------------------------------------------------------


async def test_a_hook_past_its_timeout_is_killed_with_its_children(tmp_path: Path, caplog) -> None:
    pidfile = tmp_path / "pids"
    task = asyncio.create_task(run_hook(f"sh -c '{FAMILY}' sh", str(pidfile), timeout=0.5))
    pids = await pids_in(pidfile, 3)
    try:
        assert await task is None
        assert await all_gone(pids, deadline=2.0)
        assert "sh killed after 0.5s" in caplog.text
    finally:
        kill_all(pids)


async def test_a_hook_exit_status() -> None:
    assert await run_hook("sh -c 'exit 4'") == 4
    assert await run_hook("/nonexistent/hook") is None


# ---- the runner ---------------------------------------------------------------------------------


async def test_timeout_ends_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    outcome_task = asyncio.create_task(run_command(["sh", "-c", FAMILY, "sh", str(pidfile)], 0.3))
    pids = await pids_in(pidfile, 3)
    try:
        outcome = await outcome_task
        assert outcome.timed_out
        assert await all_gone(pids, deadline=1.0)
    finally:
        kill_all(pids)


async def test_grace_then_sigkill_for_a_command_that_ignores_sigterm(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    script = "trap '' TERM; echo $$ >> \"$1\"; while :; do sleep 0.05; done"
    began = time.monotonic()
    task = asyncio.create_task(run_command(["sh", "-c", script, "sh", str(pidfile)], 0.2, grace=0.5))
    [pid] = await pids_in(pidfile, 1)
    try:
        assert (await task).timed_out
        assert time.monotonic() - began >= 0.2 + 0.4  # SIGTERM was ignored: SIGKILL came after the grace
        assert await wait_process_gone(pid, 1.0)
    finally:
        kill_all([pid])


async def test_output_is_captured_bounded_and_input_is_fed() -> None:
    outcome = await run_command(["sh", "-c", "head -c 100000 /dev/zero; echo oops >&2; exit 2"], 5)
    assert (outcome.returncode, len(outcome.stdout), outcome.stderr) == (2, OUTPUT_CAP, b"oops\n")
    echoed = await run_command(["cat"], 5, input=b"to stdin\n")
    assert (echoed.returncode, echoed.stdout) == (0, b"to stdin\n")


async def test_exit_is_seen_while_a_leftover_child_holds_the_pipes(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    began = time.monotonic()
    outcome = await run_command(["sh", "-c", 'sleep 100 & echo $! >> "$1"; exit 3', "sh", str(pidfile)], 5)
    [child] = await pids_in(pidfile, 1)
    try:
        assert outcome.returncode == 3 and time.monotonic() - began < 2
        assert not process_gone(child)  # without end_leftovers, what the command started stays
    finally:
        kill_all([child])
    left = tmp_path / "left"
    await run_command(["sh", "-c", 'sleep 100 & echo $! >> "$1"', "sh", str(left)], 5, end_leftovers=True)
    [child] = await pids_in(left, 1)
    try:
        assert await wait_process_gone(child, 2.0)
    finally:
        kill_all([child])


def test_a_leftover_child_keeps_neither_our_pipes_nor_a_transport_past_the_loop(tmp_path: Path) -> None:
    """The test run's "Event loop is closed" warning: a command that exits leaving a child that holds
    its pipes left its subprocess transport (and two descriptors) open until that child went — here
    past the event loop's end, so the garbage collector closed it on a closed loop. Now the runner
    lets go of the pipes once the command has exited."""
    pidfile = tmp_path / "pids"

    async def leave_a_child() -> None:
        before = sorted(os.listdir("/proc/self/fd"))
        outcome = await run_command(["sh", "-c", 'sleep 100 & echo $! >> "$1"; exit 3', "sh", str(pidfile)], 5)
        [child] = await pids_in(pidfile, 1)
        try:
            assert outcome.returncode == 3 and not process_gone(child)
            end = time.monotonic() + 2  # the pipes it holds are no longer ours (closed by the loop's next turn)
            while sorted(os.listdir("/proc/self/fd")) != before:
                assert time.monotonic() < end, "the runner still holds the pipes of the leftover child"
                await asyncio.sleep(0.01)
        finally:
            kill_all([child])

    assert run_in_own_loop(leave_a_child()) == (None, [])  # its loop closed right after the child is killed


def run_in_own_loop(coroutine: Coroutine[Any, Any, T]) -> tuple[T, list[object]]:
    """``asyncio.run`` (which cancels what is left when the coroutine returns, then closes its loop),
    then a garbage collection: the result, and what was reported as unraisable meanwhile (a transport
    closed by the collector on a closed loop: "Event loop is closed")."""
    unraisable: list[object] = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        result = asyncio.run(coroutine)
        gc.collect()
    finally:
        sys.unraisablehook = hook
    return result, unraisable


def test_a_background_kill_cut_short_by_the_loop_ending_still_ends_the_group(tmp_path: Path) -> None:
    """A timed-out check's group is ended in the background (SIGTERM, grace, SIGKILL); when the event
    loop ends during the grace (the daemon stopping; a test's loop), the reaper is cancelled: it now
    kills the group and lets go of the pipes then, instead of leaving the transport to the collector."""
    pidfile = tmp_path / "pids"

    async def time_out() -> list[int]:
        outcome = await run_command(["sh", "-c", "trap '' TERM; " + FAMILY, "sh", str(pidfile)], 0.5,
                                    end_leftovers=True, background_kill=True, grace=30)
        assert outcome.timed_out
        return await pids_in(pidfile, 3)

    pids, unraisable = run_in_own_loop(time_out())
    try:
        assert unraisable == []
        assert asyncio.run(all_gone(pids, 5.0))  # the cancelled reaper killed them
    finally:
        kill_all(pids)


async def test_a_program_that_cannot_start_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await run_command([str(tmp_path / "missing")], 1)


async def test_a_hook_string_never_reaches_a_shell(tmp_path: Path) -> None:
    """callback= / fallbackcommand= are split shell-style and exec'd: metacharacters stay arguments."""
    out, marker = tmp_path / "args", tmp_path / "pwned"
    script = tmp_path / "hook"
    script.write_text(f'#!/bin/sh\nfor a in "$@"; do echo "$a"; done > {out}\n')
    script.chmod(0o755)
    assert await run_hook(f"{script} 'a; touch {marker}' '$HOME' `id` $(id) >{marker}", "extra arg") == 0
    assert out.read_text().splitlines() == [f"a; touch {marker}", "$HOME", "`id`", "$(id)", f">{marker}",
                                            "extra arg"]
    assert not marker.exists()
