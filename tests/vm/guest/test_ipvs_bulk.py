"""1,000 destinations in one apply, and one read of them (timings printed for the report)."""

from __future__ import annotations

import time

import pytest

from saru.dataplane.ipvs import IpvsDataplane
from saru.model import AddDest, AddService, DelService, Dest, EditDest, ServiceKey, ServiceSettings
from tests.vm.guest.conftest import ipvsadm

KEY = ServiceKey("tcp", "10.0.0.1", 80)
COUNT = 1000


def dest(i: int, weight: int = 1) -> Dest:
    return Dest(f"10.{20 + i // 250}.0.{i % 250 + 1}", 8080, "masq", weight)


async def test_thousand_dests_in_one_apply(
    dataplane: IpvsDataplane, capsys: pytest.CaptureFixture[str]
) -> None:
    timings = {}
    t0 = time.perf_counter()
    ops = [AddService(KEY, ServiceSettings("wrr")), *(AddDest(KEY, dest(i)) for i in range(COUNT))]
    await dataplane.apply(ops)
    timings["add 1000"] = time.perf_counter() - t0
    listed = [line for line in ipvsadm("-Ln").splitlines() if line.strip().startswith("->")]
    assert len(listed) == COUNT + 1  # plus the column header line

    t0 = time.perf_counter()
    table = await dataplane.read()
    timings["read 1000"] = time.perf_counter() - t0
    assert dict(table.services[KEY].dests) == {dest(i).key: dest(i) for i in range(COUNT)}
    # the reals went in under rr (ipvs.codec.with_cheap_scheduler): the service got wrr back
    assert table.services[KEY].settings == ServiceSettings("wrr")

    t0 = time.perf_counter()
    await dataplane.apply([EditDest(KEY, dest(i, 0)) for i in range(COUNT)])
    timings["edit 1000"] = time.perf_counter() - t0
    assert "Masq    1 " not in ipvsadm("-Ln")
    assert "TCP  10.0.0.1:80 wrr" in ipvsadm("-Ln").splitlines()

    t0 = time.perf_counter()
    await dataplane.apply([DelService(KEY)])
    timings["delete service with 1000"] = time.perf_counter() - t0
    assert ipvsadm("-Sn").strip() == ""
    with capsys.disabled():
        print("\nIPVS-BULK " + ", ".join(f"{name}: {seconds:.2f}s" for name, seconds in timings.items()))
