"""Checks that do no I/O: checktype ``on`` and ``off``, and service ``none`` with negotiate.

``none`` + ``negotiate`` is always up, exactly like ldirectord's ``check_none`` (the config front end
warns about it, since such a real is in fact not monitored).
"""

from __future__ import annotations

from saru.checks.base import register
from saru.model import CheckResult, CheckSpec


@register("on")
async def check_on(spec: CheckSpec) -> CheckResult:
    """Always up: the real is used without any check."""
    return CheckResult(ok=True, message="checktype on")


@register("off")
async def check_off(spec: CheckSpec) -> CheckResult:
    """No check at all; the monitor never runs it (reals stay unknown). Down if run by hand."""
    return CheckResult(ok=False, message="checktype off: not checked")


@register("negotiate", "none")
async def check_none(spec: CheckSpec) -> CheckResult:
    """Service ``none``: nothing to negotiate, always up (ldirectord's check_none)."""
    return CheckResult(ok=True, message="service none: not checked")
