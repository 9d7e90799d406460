"""Differential test: the original Perl ldirectord and ``saru run --dataplane ipvs``, each run on the
same ldirectord.cf against the same real servers, leave the same ``ipvsadm -Ln`` table once their
checks have settled.

The scenarios are the files of tests/vm/guest/differential/ (one small virtual section each, after
a shared global part). They run as ONE configuration — one ldirectord and one Saru start instead of
one per scenario, because every start of perl or python is slow under emulation — with distinct
VIPs and real-server addresses, so that nothing links two scenarios. The comparison is still made,
and reported, scenario by scenario.

Where docs/compatibility.md documents a deliberate fix that shows in a settled table (today only
W6, the global fallback of a firewall-mark virtual), the difference is normalised explicitly in
normalise_documented_fixes(), which also checks that Saru's fix is really there; nothing else is.
The transient differences (ldirectord's start-up flapping of reals and fallback, W4) are invisible
here by construction: both tables are read only once they have settled.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.director import Director
from tests.vm.guest.differential_ldirectord import (
    Listing,
    LoopbackHttpd,
    OriginalLdirectord,
    assert_empty_table,
    render,
    settled_listing,
    table_diff,
)

SCENARIOS = Path(__file__).parent / "differential"
CHECK_PAGE = {"check.html": "up and running\n"}
#: The real servers listening in the guest: (address, port) → files served (no check page = HTTP 404).
#: Reals of the scenarios absent from here have nothing listening (connection refused).
SERVERS: dict[tuple[str, int], dict[str, str]] = {
    ("127.0.1.1", 80): CHECK_PAGE, ("127.0.1.2", 80): CHECK_PAGE,
    ("127.0.2.1", 80): CHECK_PAGE, ("127.0.2.2", 80): {"index.html": "no check page here\n"},
    ("127.0.3.1", 80): CHECK_PAGE, ("127.0.3.2", 80): {"index.html": "no check page here\n"},
    ("127.0.5.1", 8080): CHECK_PAGE, ("127.0.5.2", 8081): CHECK_PAGE,
    ("127.0.7.1", 8080): CHECK_PAGE,
}
#: What the original must leave (checked first, so that the comparison can never pass vacuously,
#: e.g. with two empty tables); counters are dropped by comparable_listing().
EXPECTED_ORIGINAL: Listing = {
    "FWM 6 rr": ["-> 127.0.6.3:0 Route 1", "-> 127.0.6.4:0 Route 2"],
    "FWM 8 rr": [],  # W6: ldirectord has no fallback for a firewall-mark virtual
    "TCP 10.99.5.1:80 rr": ["-> 127.0.1.1:80 Route 1", "-> 127.0.1.2:80 Route 1"],
    "TCP 10.99.5.2:80 rr": ["-> 127.0.2.1:80 Route 1"],
    "TCP 10.99.5.3:80 wlc": ["-> 127.0.3.1:80 Route 2", "-> 127.0.3.2:80 Route 0"],
    "TCP 10.99.5.4:80 rr": ["-> 127.0.0.1:80 Route 1"],
    "TCP 10.99.5.5:80 wrr persistent 300 mask 255.255.255.0": [
        "-> 127.0.5.1:8080 Masq 3", "-> 127.0.5.2:8081 Masq 1"],
    "TCP 10.99.5.7:80 rr": ["-> 127.0.7.1:80 Route 1"],  # W5: ipvsadm stored the virtual's port
    "UDP 10.99.5.6:53 sh": ["-> 127.0.6.1:53 Tunnel 1", "-> 127.0.6.2:53 Route 5"],
}
SETTLE_POLL = 1.0  # = checkinterval of differential/globals.cf
SARU_START_TIMEOUT = 120.0  # python + pyroute2 start-up under emulation


def configuration() -> tuple[str, dict[str, str]]:
    """The combined ldirectord.cf, and each scenario's file name by its virtual (``10.99.5.1:80``, ``6``)."""
    parts = [(SCENARIOS / "globals.cf").read_text()]
    owners: dict[str, str] = {}
    for path in sorted(SCENARIOS.glob("[0-9][0-9]-*.cf")):
        text = path.read_text()
        parts.append(text)
        for virtual in re.findall(r"^virtual=(\S+)", text, re.M):
            owners[virtual] = path.name
    return "\n".join(parts), owners


def real_count(config: str) -> int:
    """Reals in the configuration: ldirectord logs one check line per real and pass."""
    return len(re.findall(r"^\s+real=", config, re.M))


def scenario_of(service: str, owners: dict[str, str]) -> str:
    """``TCP 10.99.5.1:80 rr`` → ``01-guide.cf``; ``FWM 6 rr`` → its file too."""
    return owners.get(service.split()[1], "(not in any scenario)")


def by_scenario(table: Listing, owners: dict[str, str]) -> dict[str, Listing]:
    out: dict[str, Listing] = {}
    for service, dests in table.items():
        out.setdefault(scenario_of(service, owners), {})[service] = dests
    return out


def normalise_documented_fixes(table: Listing) -> Listing:
    """Map Saru's table to what ldirectord leaves where docs/compatibility.md documents a deliberate fix
    that shows in a settled table — and check that the fix is really there.

    * W6, "Accepted / a global fallback with a firewall-mark virtual" (08-fwmark-global-fallback.cf):
      ldirectord looks the global fallback up by the virtual's protocol, finds none for ``fwm`` and
      leaves the mark without any destination; Saru applies the global fallback (its own port).

    Not normalised, because they do not show once settled: W4 ("Runtime behaviour / start and
    reload": ldirectord adds and deletes every real and the fallback at start-up — transient) and W5
    ("gate/ipip real on another port", 07-gate-other-port.cf: from a cold start with the real up,
    both leave it on the virtual's port at full weight; ldirectord's commands naming the configured
    port fail — its stop's ``-d … :8080`` here — without changing a settled table).
    """
    out = {service: list(dests) for service, dests in table.items()}
    w6_service, w6_fallback = "FWM 8 rr", "-> 127.0.0.1:80 Route 1"
    assert out.get(w6_service) == [w6_fallback], (
        f"W6: Saru should apply the global fallback to {w6_service!r}, table has {out.get(w6_service)}")
    out[w6_service] = []
    return out


@pytest.mark.timeout(300)
def test_same_tables_as_the_original_ldirectord(tmp_path: Path) -> None:
    config, owners = configuration()
    config_file = tmp_path / "ldirectord.cf"
    config_file.write_text(config)
    servers = LoopbackHttpd(tmp_path / "www")
    try:
        for (host, port), files in SERVERS.items():
            servers.start(host, port, files)
        servers.wait_listening(SERVERS)

        original = OriginalLdirectord(config_file, tmp_path)
        try:
            # the start-up pass (ld_start) is over when the main loop checks its first real; with
            # failurecount=1 and servers that do not change, the table is final after that pass
            original.wait_checks(real_count(config) + 1, timeout=90)
            ldirectord_table = settled_listing(SETTLE_POLL, timeout=30)
        finally:
            status = original.stop()
        assert status == 0, original.log_text()
        assert_empty_table("ldirectord stopped (cleanstop=yes)")
        assert ldirectord_table == EXPECTED_ORIGINAL, (
            "the original ldirectord did not build the expected table:\n"
            + table_diff(EXPECTED_ORIGINAL, ldirectord_table, ("expected", "ldirectord"))
            + "\n---- ldirectord log ----\n" + original.log_text())

        workdir = tmp_path / "saru"
        workdir.mkdir()
        saru = Director(workdir, config, ("--dataplane", "ipvs"))
        try:
            saru.wait_ready(SARU_START_TIMEOUT)
            saru_table = settled_listing(SETTLE_POLL, timeout=30)
        finally:
            status = saru.stop()
        assert status == 0, saru.log_text()
        assert_empty_table("Saru stopped (cleanstop=yes)")
    finally:
        servers.stop()

    saru_table = normalise_documented_fixes(saru_table)
    expected, actual = by_scenario(ldirectord_table, owners), by_scenario(saru_table, owners)
    differences = [
        f"== {name} ==\n" + table_diff(expected.get(name, {}), actual.get(name, {}), ("ldirectord", "saru"))
        for name in sorted(set(expected) | set(actual)) if expected.get(name) != actual.get(name)
    ]
    assert not differences, ("Saru's IPVS table differs from the original ldirectord's:\n"
                             + "\n".join(differences) + "\n---- Saru's whole table ----\n"
                             + "\n".join(render(saru_table)))
