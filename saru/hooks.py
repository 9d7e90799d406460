"""External commands the config names (``callback``, ``fallbackcommand``), exec'd without a shell.

ldirectord passes these strings to ``system()``, i.e. to a shell; Saru splits them with shell-like
quoting rules (``shlex``) and execs the program directly, so no shell metacharacter is ever
interpreted. Commands run asynchronously with a timeout and never block health checks; they are run
by ``saru.subproc`` (own session; on timeout the whole process group is killed at once; output
captured, the last line of stderr logged when the command fails).
"""

from __future__ import annotations

import logging
import shlex

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
