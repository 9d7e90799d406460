"""How long the fuzz tier runs: Hypothesis settings per test, chosen by ``SARU_FUZZ_PROFILE``.

``ci`` (the default, what ``make test`` runs): each test's own small ``examples`` count, a generous
per-example deadline (the machine is shared; a hang is caught by the deadline and by pytest-timeout),
``derandomize`` so that the same examples run every time and a failure reproduces, no example database.
``long`` (``make fuzz``): ``examples * SARU_FUZZ_SCALE`` (default 20: about 10 minutes), random, with the database kept
under ``.hypothesis/`` so that a failure found once is replayed first next time; copy it into the test
as an ``@example`` when fixing the bug.

The non-Hypothesis loops (hostile packets on a socket, requests to a running daemon) take their count
from ``rounds(n)``.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("SARU_FUZZ_PROFILE", "ci")
if PROFILE not in ("ci", "long"):
    raise RuntimeError(f"SARU_FUZZ_PROFILE={PROFILE!r}: use ci or long")
SCALE = int(os.environ.get("SARU_FUZZ_SCALE", "20")) if PROFILE == "long" else 1
LONG = PROFILE == "long"


def fuzz(examples: int, deadline: float = 5.0) -> settings:
    """The settings of one property: ``examples`` in CI, ``examples * SCALE`` under ``make fuzz``."""
    return settings(
        max_examples=examples * SCALE,
        deadline=timedelta(seconds=deadline),
        derandomize=not LONG,
        database=settings.default.database if LONG else None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture],
        print_blob=True,
    )


def rounds(count: int) -> int:
    """How many iterations a hand-written fuzz loop makes (``count`` in CI)."""
    return count * SCALE
