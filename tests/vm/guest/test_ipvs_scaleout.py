"""Issue 15 on the IPVS plane: the BGP bed of tests/bgp (``tests.lab.bgp``) with its directors on IPVS,
inside the test guest (the only kernel here with IPVS; each director namespace has its own IPVS).

A real BIRD router doing L4 ECMP, Saru directors running IPVS direct routing with the Maglev ``mh``
scheduler (``mh-port``) and ``[bgp]``, four nginx reals with the VIP on lo, two clients with long
rate-limited downloads. The guest is one emulated CPU (TCG): sizes are small (10 downloads per client,
about 14 s each; checks every 2 s with a 4 s timeout; BFD 0.5 s x 6), and the directors start once: ld1
and ld2 announce; ld3 runs from the start but the router's session to it is off until it joins (test 3:
it has never seen the flows the router then moves to it). The tests run in file order, each leaving the
state the next one starts from (said in its docstring): ld1+ld2 → ld1+ld2+ld3 → (ld3 drained) ld1+ld2 →
(ld2 killed) ld1.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lab import wait_for
from tests.lab.bgp import CLIENTS, DIRECTORS, VIP, BGPBed, Downloads, broken

START = 240.0  # seconds for a director to start and announce: python and pyroute2 under emulation
PER_CLIENT = 10


def announced(bed: BGPBed, *roles: str) -> set[str]:
    return bed.wait_paths(lambda paths: paths == {DIRECTORS[r] for r in roles}, f"routes via {', '.join(roles)}",
                          timeout=30)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BGPBed]:
    ok, why = BGPBed.available("ipvs")
    assert ok, f"the BGP bed cannot be built in the test VM: {why}"  # a failure, never a skip, in here
    with BGPBed(tmp_path_factory.mktemp("bgp-ipvs"), plane="ipvs", bfd_interval=0.5, bfd_multiplier=6,
                check_interval=2.0, big=448 * 1024, rate="32k", stall=20.0) as lab:
        lab.peer("ld3", False)
        for role in ("ld1", "ld2", "ld3"):
            lab.director(role, wait=False)
        lab.wait_paths(lambda paths: paths == {DIRECTORS["ld1"], DIRECTORS["ld2"]}, "ld1 and ld2 announcing",
                       timeout=START, proc=lab.directors["ld1"])
        yield lab


def load(bed: BGPBed) -> list[Downloads]:
    return bed.load(PER_CLIENT)


def ipvs_service(bed: BGPBed, role: str) -> str:
    """The VIP's service line of ``ipvsadm -Ln`` in ``role``'s namespace (whitespace collapsed)."""
    lines = [" ".join(line.split()) for line in bed.run(role, "ipvsadm", "-Ln").stdout.splitlines()]
    found = [line for line in lines if line.startswith(f"TCP {VIP}:80 ")]
    assert len(found) == 1, lines
    return found[0]


def test_routes_follow_the_table_every_director_carries_traffic_and_a_failed_real_moves_only_its_flows(
        bed: BGPBed) -> None:
    """ld1 and ld2 announce once their tables are applied and both carry downloads; then fe4's nginx
    stops (every director sees it fail): only its downloads end, the others stay on their reals. Leaves
    ld1 and ld2 announcing (ld3 running, not peered), fe4 back in every table."""
    for role in ("ld1", "ld2"):
        log = bed.directors[role].logtext()
        applied = log.find("table in line with health")
        announced_at = log.find(f"BGP: {VIP} announced")
        assert 0 <= applied < announced_at, log
        assert "set net.ipv4.vs.sloppy_tcp = 1" in log, log
        assert "is not an address of this director" not in log, log
        assert bed.run(role, "cat", "/proc/sys/net/ipv4/vs/sloppy_tcp").stdout.strip() == "1"
        service = ipvs_service(bed, role)
        assert service.split()[2] == "mh" and "mh-port" in service, service
    loads = load(bed)
    carried = bed.flows_by_director(loads)
    assert carried["ld1"] and carried["ld2"], {r: len(f) for r, f in carried.items()}
    assert not carried["ld3"], "ld3 is not peered: it must carry nothing"
    reals = {(CLIENTS[d.role], int(r["port"])): r["real"] for d in loads for r in d.started}
    bed.stop_nginx("fe4")
    wait_for(lambda: all(d.real_out("fe4") for d in bed.directors.values()), 30, "fe4 out of every table")
    failed = broken(loads)
    assert all(reals[key] == "fe4" for key in failed), failed
    assert {key for key, real in reals.items() if real == "fe4"} <= failed.keys(), "fe4's downloads completed?"
    bed.nginx("fe4")
    wait_for(lambda: not any(d.real_out("fe4") for d in bed.directors.values()), 30, "fe4 back in every table")


def test_director_added_breaks_nothing(bed: BGPBed) -> None:
    """ld3 (its table applied long ago) joins the ECMP group under load: the router moves flows it has
    never seen to it; IPVS schedules them (``sloppy_tcp``) on the same real by the same Maglev table.
    Leaves ld1, ld2, ld3 announcing."""
    ld3 = bed.directors["ld3"]
    wait_for(lambda: "table in line with health" in ld3.logtext(), START, "ld3's table applied")
    assert DIRECTORS["ld3"] not in bed.paths()
    loads = load(bed)
    before = bed.flows_by_director(loads)
    assert not before["ld3"]
    bed.peer("ld3", True)
    announced(bed, "ld1", "ld2", "ld3")
    moved = wait_for(lambda: bed.flows_by_director(loads)["ld3"], 10, "a flow moved onto ld3")
    assert moved <= before["ld1"] | before["ld2"]
    assert broken(loads) == {}


def test_drain_breaks_nothing(bed: BGPBed) -> None:
    """``saru drain`` of ld3 (its request, ``drain-director``, sent straight to the control socket: the
    command's own Python start-up would outlast the downloads here; tests/bgp runs the command): withdrawn
    first, stops once its IPVS counters stop moving. Leaves ld1, ld2."""
    loads = load(bed)
    carried = bed.flows_by_director(loads)
    assert carried["ld3"], {r: len(f) for r, f in carried.items()}
    d = bed.directors.pop("ld3")
    answer = d.ask("drain-director", within=60, quiet=1.5)
    assert answer["withdrawn"] == [VIP], answer
    assert d.proc.wait(90) == 0
    assert DIRECTORS["ld3"] not in bed.paths()
    assert "BGP: draining" in d.logtext()
    assert "BGP: drained: no traffic for 1.5 s" in d.logtext(), d.logtext()  # the IPVS counters went quiet
    assert broken(loads) == {}


def test_killed_director_breaks_nothing(bed: BGPBed) -> None:
    """ld2's machine dies (link down, kill -9): BFD takes its route away; its flows move to ld1, which
    picks them up on the same real; ld1's own flows are untouched. Leaves ld1."""
    loads = load(bed)
    carried = bed.flows_by_director(loads)
    assert carried["ld2"] and carried["ld1"], {r: len(f) for r, f in carried.items()}
    bed.dead("ld2")
    announced(bed, "ld1")
    failed = broken(loads)
    assert not (failed.keys() & carried["ld1"]), failed
    assert not (failed.keys() & carried["ld2"]), f"ld2's flows broke: {failed}"
    assert failed == {}
    assert bed.curl() and bed.curl("cl2")

