"""Fixtures for the tests that run INSIDE the QEMU guest (tests/vm/test_ipvs_in_vm.py boots it).

The guest has a real IPVS kernel; every test starts and ends with an empty IPVS table. Outside
the guest these tests are not collected (tests/vm/conftest.py); inside it (``SARU_IN_VM=1``) a
missing IPVS is a failure, never a skip.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest

from saru.dataplane.ipvs import PROC_IP_VS, IpvsDataplane
from tests.vm.guest.lvs_nat import lvs_nat

__all__ = ["lvs_nat"]  # fixture: an LVS-NAT topology of namespaces

IN_VM = os.environ.get("SARU_IN_VM") == "1"


def ipvsadm(*args: str, check: bool = True) -> str:
    """Run the real ipvsadm (an independent reader of the kernel table)."""
    done = subprocess.run(["ipvsadm", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise AssertionError(f"ipvsadm {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def saved_rules() -> set[str]:
    """``ipvsadm -Sn`` as a set of lines (the kernel lists services in hash order)."""
    return {line.strip() for line in ipvsadm("-Sn").splitlines() if line.strip()}


def listing() -> dict[str, set[str]]:
    """``ipvsadm -Ln``: each service line → its destination lines (whitespace collapsed)."""
    out: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in ipvsadm("-Ln").splitlines()[3:]:  # version and two column-header lines
        text = " ".join(line.split())
        if text.startswith("->"):
            assert current is not None, line
            current.add(text)
        elif text:
            current = out.setdefault(text, set())
    return out


def thresholds() -> dict[str, tuple[int, int]]:
    """Destination ``host:port`` → (upper, lower) from ``ipvsadm -Ln --thresholds``."""
    out = {}
    for line in ipvsadm("-Ln", "--thresholds").splitlines():
        match = re.match(r"\s+->\s+(\S+)\s+(\d+)\s+(\d+)\s", line)
        if match and match.group(1) != "RemoteAddress:Port":
            out[match.group(1)] = (int(match.group(2)), int(match.group(3)))
    return out


def flush() -> None:
    ipvsadm("-C")


@pytest.fixture(scope="session", autouse=True)
def ipvs_kernel() -> dict[str, bool]:
    """IPVS must be there: available() loads ip_vs like ipvsadm does (the VM boots without it)."""
    assert IN_VM, "the guest tests run only inside the test VM (SARU_IN_VM=1)"
    loaded_before = PROC_IP_VS.exists()
    ok, why = IpvsDataplane.available()
    assert ok, f"IPVS is not usable in the test VM: {why}"
    return {"loaded_before": loaded_before, "loaded_after": PROC_IP_VS.exists()}


@pytest.fixture(autouse=True)
def empty_table() -> Iterator[None]:
    flush()
    yield
    flush()


@pytest.fixture
async def dataplane() -> AsyncIterator[IpvsDataplane]:
    plane = IpvsDataplane()
    await plane.start()
    try:
        yield plane
    finally:
        await plane.close()
