"""External commands the config names (``callback``, ``fallbackcommand``), exec'd without a shell.

ldirectord passes these strings to ``system()``, i.e. to a shell; Saru splits them with shell-like
quoting rules (``shlex``) and execs the program directly, so no shell metacharacter is ever
interpreted. Commands run asynchronously with a timeout and never block health checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal

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
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
        )
    except OSError as exc:
        LOGGER.error("cannot run %s: %s", argv[0], exc.strerror or exc)
        return None
    try:
        status = await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        LOGGER.error("%s killed after %ss", argv[0], timeout)
        return None
    if status != 0:
        LOGGER.info("system(%s) failed: exit status %s", shlex.join(argv), status)
    return status
