"""Boot the test VM once and run every IPVS test (tests/vm/guest) in ONE pytest session inside it.

The host's kernel may have no IPVS, so the IPVS data plane is tested in a QEMU guest running
Debian's kernel (tests/vm/harness.py). Python start-up is slow under emulation (importing pyroute2
takes seconds), hence a single inner pytest process for all guest tests. When anything inside
fails, this test fails with the guest's whole pytest output; so does a test skipped in there (the guest
tests never skip: a skip would mean one did not run).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.helpers import require
from tests.vm.harness import missing_prerequisites, run_in_vm

PROJECT = Path(__file__).resolve().parents[2]
GUEST_TESTS = "tests/vm/guest"


@pytest.mark.timeout(1200)
def test_ipvs_dataplane_in_a_real_kernel() -> None:
    missing = missing_prerequisites()
    require(not missing, "cannot boot the IPVS test VM: " + "; ".join(missing))
    result = run_in_vm(
        [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "-o", "timeout=300",
         GUEST_TESTS],
        cwd=str(PROJECT),
        env={"SARU_IN_VM": "1", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=900,  # the BGP scale-out bed (test_ipvs_scaleout.py) is about half of it
    )
    report = (f"guest exit status {result.returncode} (boot {result.boot_seconds}s, "
              f"total {result.total_seconds:.1f}s, accel {result.accel})\n{result.output}")
    print(report)
    if result.returncode in (124, 125):
        report += "\n---- guest console ----\n" + result.console
    assert result.returncode == 0, report
    summary = re.findall(r"^(\d+ passed.*)$", result.output, re.M)
    assert summary and not any(word in summary[-1] for word in ("failed", "error", "skipped")), report
