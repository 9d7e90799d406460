"""``saru ipvsadm --dataplane ipvs`` prints exactly what the real ipvsadm prints for the same kernel table."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from saru.cli.main import main
from saru.dataplane.ipvs import IpvsDataplane
from saru.diff import diff
from saru.model import Table
from tests.vm.guest.conftest import ipvsadm, saved_rules
from tests.vm.guest.test_ipvs_table import full_table


async def saru_ipvsadm(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run the command in a thread (it has its own event loop) and return what it printed."""
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["ipvsadm", "--dataplane", "ipvs", *args]) == 0
    return capsys.readouterr().out


async def test_listings_are_byte_identical(dataplane: IpvsDataplane, capsys: pytest.CaptureFixture[str]) -> None:
    await dataplane.apply(diff(Table(), full_table()))
    for args in (("-L", "-n"), ("-L", "-n", "--thresholds"), ("-L", "-n", "--persistent-conn")):
        real = ipvsadm(*args)
        ours = await saru_ipvsadm(capsys, *args)
        assert ours == real, f"ipvsadm {' '.join(args)}:\n--- real\n{real}--- saru\n{ours}"
    real_rules = set(ipvsadm("-S", "-n").splitlines())
    assert set((await saru_ipvsadm(capsys, "-S", "-n")).splitlines()) == real_rules


async def test_restore_round_trip(dataplane: IpvsDataplane, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    await dataplane.apply(diff(Table(), full_table()))
    rules = ipvsadm("-S", "-n")
    assert await saru_ipvsadm(capsys, "-C") == ""
    assert await dataplane.read() == Table()
    monkeypatch.setattr("sys.stdin", io.StringIO(rules))
    await saru_ipvsadm(capsys, "-R")
    # ipvsadm -S carries no thresholds, so neither does the restored table
    without_thresholds = Table.of(
        replace(service, dests={k: replace(d, upper_threshold=0, lower_threshold=0) for k, d in service.dests.items()})
        for service in full_table().services.values())
    assert await dataplane.read() == without_thresholds


async def test_delete_server_looks_up_the_port_as_given(capsys: pytest.CaptureFixture[str]) -> None:
    """ipvsadm rewrites a DR/tunnel destination's port to the service's only for -a/-e: -d of a masq
    real on another port works, -d of a DR real under another port is "No such destination"."""
    import subprocess

    service = "10.9.0.1:80"
    ipvsadm("-A", "-t", service, "-s", "rr")
    ipvsadm("-a", "-t", service, "-r", "10.9.1.1:8080", "-m")
    ipvsadm("-a", "-t", service, "-r", "10.9.1.2:8080", "-m")
    ipvsadm("-a", "-t", service, "-r", "10.9.1.3:8080", "-g")  # stored at :80, the service's port
    ipvsadm("-d", "-t", service, "-r", "10.9.1.1:8080")  # the real ipvsadm deletes a masq real…
    await saru_ipvsadm(capsys, "-d", "-t", service, "-r", "10.9.1.2:8080")  # …and so does saru's
    real = await asyncio.to_thread(subprocess.run, ["ipvsadm", "-d", "-t", service, "-r", "10.9.1.3:8080"],
                                   capture_output=True, text=True, timeout=30)
    capsys.readouterr()
    status = await asyncio.to_thread(main, ["ipvsadm", "--dataplane", "ipvs", "-d", "-t", service,
                                            "-r", "10.9.1.3:8080"])
    ours = capsys.readouterr().err
    assert (status, ours.strip()) == (real.returncode, real.stderr.strip()) == (255, "No such destination")
    assert saved_rules() == {f"-A -t {service} -s rr", f"-a -t {service} -r 10.9.1.3:80 -g -w 1"}
