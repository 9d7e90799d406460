"""Issue 15's tests 1-7 on the BGP bed: a real BIRD router doing L4 ECMP to Saru directors (nftables DR,
Maglev ``mh``), each announcing the VIP through the BIRD it runs; real nginx reals, long downloads.

One bed for the module (building it and peering take most of the time); each test leaves ld1-ld3
running and announcing. Test 7's other half (the HA modes unchanged) is the HA and cluster tiers, which
run without ``[bgp]``; tests/unit/test_bgp.py checks that ``[bgp]`` and ``[ha]`` exclude each other.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import pytest

from tests.helpers import require
from tests.lab import wait_for
from tests.lab.bgp import CLIENTS, DIRECTORS, VIP, BGPBed, Downloads, broken

ok, why = BGPBed.available()
THREE = ("ld1", "ld2", "ld3")


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BGPBed]:
    require(ok, why)
    with BGPBed(tmp_path_factory.mktemp("bgp")) as lab:
        for role in THREE:
            lab.director(role)
        yield lab


@pytest.fixture(autouse=True)
def _three_directors(bed: BGPBed) -> Iterator[None]:
    """Every test starts and ends with ld1-ld3 announcing (restarting what a test stopped)."""
    yield
    for role in list(bed.directors):
        if role not in THREE:
            bed.directors.pop(role).stop()
            bed.wait_paths(lambda paths, r=role: DIRECTORS[r] not in paths, f"{role} withdrawn")
    for role in THREE:
        d = bed.directors.get(role)
        if d is None or d.proc.poll() is not None:
            bed.revive(role)
            bed.director(role)
    bed.wait_paths(lambda paths: paths == {DIRECTORS[r] for r in THREE}, "ld1-ld3 announcing")


def by_director(bed: BGPBed, downloads: list[Downloads]) -> dict[str, set[tuple[str, int]]]:
    return bed.flows_by_director(downloads)


def start_load(bed: BGPBed, per_client: int = 12) -> list[Downloads]:
    return bed.load(per_client)


def test_routes_follow_the_table_and_every_director_carries_traffic(bed: BGPBed) -> None:
    # 1: the route appears only after the table is applied (the announcer's log says so, in order)
    for role in THREE:
        log = bed.directors[role].logtext()
        applied = log.find("table in line with health")
        announced = log.find(f"BGP: {VIP} announced")
        assert 0 <= applied < announced, log
        # BIRD brings BFD up a moment after the BGP session
        doc = wait_for(lambda r=role: (d := bed.directors[r].bgp())["neighbors"][0]["bfd"] == "Up" and d, 5,
                       f"{role}'s BFD session up")
        assert doc["neighbors"][0]["state"] == "Established", doc
        assert doc["routes"] == [{"vip": VIP, "state": "up", "med": 0, "since": doc["routes"][0]["since"]}]
    assert bed.paths() == {DIRECTORS[r] for r in THREE}
    loads = start_load(bed)
    carried = by_director(bed, loads)
    assert all(carried[r] for r in THREE), {r: len(f) for r, f in carried.items()}
    assert broken(loads) == {}


def test_killed_director_surviving_flows_unbroken_and_moved_flows_continue(bed: BGPBed) -> None:
    # 2: ld3's machine dies (link down, kill -9): BFD takes its route away, its flows move on
    loads = start_load(bed)
    carried = by_director(bed, loads)
    assert carried["ld3"], "no download went through ld3: nothing to move"
    start = time.monotonic()
    bed.dead("ld3")
    bed.wait_paths(lambda paths: DIRECTORS["ld3"] not in paths, "ld3's route gone", timeout=10)
    gone = time.monotonic() - start
    failed = broken(loads)
    survivors = carried["ld1"] | carried["ld2"]
    assert not (failed.keys() & survivors), failed
    moved_broken = failed.keys() & carried["ld3"]
    assert not moved_broken, f"{len(moved_broken)}/{len(carried['ld3'])} of ld3's flows broke: {failed}"
    assert gone < 3, f"BFD: ld3's route left the router after {gone:.2f} s"
    assert bed.curl() and bed.curl("cl2")


def test_director_added_back_and_a_fourth_breaks_nothing(bed: BGPBed) -> None:
    # 3: ECMP rehashes flows onto the new directors, which pick them up on the same real
    loads = start_load(bed)
    bed.director("ld4")
    moved = wait_for(lambda: by_director(bed, loads)["ld4"], 5, "a flow moved onto ld4")
    bed.directors.pop("ld3").stop()
    bed.wait_paths(lambda paths: DIRECTORS["ld3"] not in paths, "ld3 withdrawn")
    bed.director("ld3")
    assert moved and broken(loads) == {}


def test_drain_breaks_nothing(bed: BGPBed) -> None:
    # 4: saru drain withdraws first, waits for the flows to leave, then stops
    loads = start_load(bed)
    carried = by_director(bed, loads)
    assert carried["ld2"]
    d = bed.directors["ld2"]
    got = bed.run("ld2", sys.executable, "-m", "saru", "drain", "--control", str(d.control), "--quiet", "1.5",
                  "--timeout", "30", timeout=60)
    assert "drained: the director has stopped" in got.stdout, got.stdout + got.stderr
    assert d.proc.wait(10) == 0
    assert DIRECTORS["ld2"] not in bed.paths()
    assert "BGP: draining" in d.logtext()
    assert broken(loads) == {}


def test_real_failure_moves_only_its_flows_and_an_added_real_moves_none(bed: BGPBed) -> None:
    # 5: fe4's nginx stops: its downloads end, no other moves; it comes back: nothing moves to it
    loads = start_load(bed)
    reals = {(d.role, r["port"]): r["real"] for d in loads for r in d.started}
    bed.stop_nginx("fe4")
    wait_for(lambda: all(d.real_out("fe4") for d in bed.directors.values()), 10, "fe4 out of every table")
    failed = broken(loads)
    assert all(reals[(role, port)] == "fe4" for (addr, port) in failed
               for role in CLIENTS if CLIENTS[role] == addr), failed
    loads = start_load(bed)
    assert all(r["real"] != "fe4" for d in loads for r in d.started)
    routes = len(bed.route_log())
    bed.nginx("fe4")
    wait_for(lambda: not any(d.real_out("fe4") for d in bed.directors.values()), 10, "fe4 back in every table")
    assert broken(loads) == {}, bed.route_log()[routes:]


def test_one_director_without_reals_withdraws_the_others_serve(bed: BGPBed) -> None:
    # 6: only ld1 loses its reals (its checks are blocked): it withdraws, ld2 and ld3 keep serving
    bed.nft("ld1", "add table inet block\nadd chain inet block out { type filter hook output priority 0; }\n"
                   "add rule inet block out ip daddr 10.88.0.0/24 tcp dport 80 drop\n")
    try:
        bed.wait_paths(lambda paths: paths == {DIRECTORS["ld2"], DIRECTORS["ld3"]}, "ld1 withdrawn")
        route = bed.directors["ld1"].bgp()["routes"][0]
        assert route["state"] == "withdrawn"
        assert "withdrawn: no real up here" in bed.directors["ld1"].logtext()
        assert all(bed.curl(c) for c in ("cl1", "cl2") for _ in range(5))
    finally:
        bed.run("ld1", "nft", "delete", "table", "inet", "block")
    bed.wait_paths(lambda paths: DIRECTORS["ld1"] in paths, "ld1 announcing again")



def test_bgp_is_opt_in(bed: BGPBed) -> None:
    # 7: a director without [bgp] runs as before: no routing daemon, no route, nothing in its status
    d = bed.director("ld4", bgp=False, wait=False)
    wait_for(lambda: "table in line with health" in d.logtext(), 20, "ld4 ready")
    assert d.ask("status")["bgp"] is None
    pids = bed.run("br", "ip", "netns", "pids", bed["ld4"].netns).stdout.split()
    names = {open(f"/proc/{pid}/comm").read().strip() for pid in pids if os.path.exists(f"/proc/{pid}/comm")}
    assert "bird" not in names, names
    assert DIRECTORS["ld4"] not in bed.paths()
    assert "BGP" not in d.logtext()
    # saru drain without a real has nothing to withdraw there: refused, the director keeps running
    got = bed.run("ld4", sys.executable, "-m", "saru", "drain", "--control", str(d.control), check=False)
    assert got.returncode == 1 and "no [bgp] in saru.toml" in got.stderr, got
    assert d.proc.poll() is None
