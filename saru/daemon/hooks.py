"""External commands the config names (``callback``, ``fallbackcommand``), exec'd without a shell.

ldirectord passes these strings to ``system()``, i.e. to a shell; Saru splits them with shell-like
quoting rules (``shlex``) and execs the program directly, so no shell metacharacter is ever
interpreted. Commands run asynchronously with a timeout and never block health checks; they are run
by ``saru.subproc`` (own session; on timeout the whole process group is killed at once; output
captured, the last line of stderr logged when the command fails). ``HookRunner`` runs them one after
the other (a ``start`` never overtakes the ``stop`` before it) and holds every background job the
daemon waits for on its way out.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Coroutine
from typing import Any

from saru.subproc import last_line, run_command

LOGGER = logging.getLogger("saru.hooks")


async def run_hook(command: str, *args: str, timeout: float = 60.0) -> int | None:
    """Run ``command`` (split shell-style) with extra ``args``; returns its exit status or None."""
    try:
        argv = [*shlex.split(command), *args]
    except ValueError as exc:
        LOGGER.error("cannot run %r: %s", command, exc)
        return None
    if not argv:
        return None
    try:
        outcome = await run_command(argv, timeout, grace=0)
    except OSError as exc:
        LOGGER.error("cannot run %s: %s", argv[0], exc.strerror or exc)
        return None
    if outcome.returncode is None:
        LOGGER.error("%s killed after %ss", argv[0], timeout)
        return None
    if outcome.returncode != 0:
        detail = last_line(outcome.stderr)
        LOGGER.info("system(%s) failed: exit status %s%s", shlex.join(argv), outcome.returncode,
                    f": {detail}" if detail else "")
    return outcome.returncode


class HookRunner:
    """The daemon's background jobs: external commands in order, and anything else ``spawn``ed."""

    def __init__(self) -> None:
        self._jobs: set[asyncio.Future[Any]] = set()
        self._last: asyncio.Future[None] | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background; ``wait()`` awaits it."""
        self._track(asyncio.ensure_future(coro))

    def run_in_order(self, command: str, *args: str) -> None:
        """Run an external command after every earlier one has finished (start/stop never swap)."""
        previous = self._last

        async def after_previous() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await run_hook(command, *args)

        self._last = asyncio.ensure_future(after_previous())
        self._track(self._last)

    async def wait(self) -> None:
        """Wait for every job still running (their failures are theirs: logged, not raised)."""
        if self._jobs:
            await asyncio.gather(*self._jobs, return_exceptions=True)

    def _track(self, job: asyncio.Future[Any]) -> None:
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
