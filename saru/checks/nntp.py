"""``negotiate`` for service ``nntp``: the server's greeting must start with ``2``.

What goes on the wire (compare ldirectord's check_nntp, research §2.2)::

    <- 200 news.example.net ready   (first byte "2": 200 posting allowed / 201 not allowed)
    -> QUIT

ldirectord reads up to 64 bytes and closes without a word; Saru reads the greeting line (capped at
``lineproto.MAX_LINE``) and says QUIT, so the server logs a clean end of session. ``request`` and
``receive`` are not used. IPv6 reals work (the original supports nntp on ``virtual6`` too).
"""

from __future__ import annotations

from saru.checks.base import CheckFailed, register
from saru.checks.lineproto import LineStream, check_deadline, printable
from saru.model import CheckResult, CheckSpec


@register("negotiate", "nntp")
async def check_nntp(spec: CheckSpec) -> CheckResult:
    """Up when the greeting starts with ``2``."""
    deadline = check_deadline(spec)
    async with await LineStream.open(spec.address, spec.port) as stream:
        greeting = await stream.read_line()
        if not greeting.startswith(b"2"):
            raise CheckFailed(f"NNTP server not ready: {printable(greeting) or 'empty greeting'}")
        await stream.goodbye("QUIT", deadline)
    return CheckResult(ok=True, message=printable(greeting))
