"""The soak in ``make test``: three minutes of 10,000 reals with 1 % flapping (``make soak``: fifteen).

See ``tests.soak.soak``: resident memory, descriptors, asyncio tasks and history sizes must stay within
the stated tolerances after a one-minute warm-up, and the table must come back to every real of the
config when the flapping stops, with no drift.
"""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import require
from tests.lab import can_build
from tests.soak import soak

pytestmark = pytest.mark.timeout(900)


def test_three_minutes_of_flapping_reals_stay_flat_and_leave_no_drift() -> None:
    ok, why = can_build("nginx", "nft", what="the soak (a network namespace)")
    require(ok and shutil.which("nginx") is not None, why)
    result = soak.run(3.0, sample=30.0)
    assert result["problems"] == [], result["problems"]
    assert result["table_reals"] == soak.VIRTUALS * soak.REALS_PER_VIRTUAL
    assert result["drift"] is None and result["apply_error"] is None, result
    applies = [s["applies"] for s in result["samples"]]
    assert applies[-1] > applies[0], "the flapping reals never changed the table: the soak did not flap"
