"""The nftables data plane on the real kernel: the UltraMonkey topology in network namespaces.

Each test builds its own namespaces (``tests.lab.guide``), drives an ``NftDataplane`` inside
the director namespace (``tests.kernel.nftctl``) and sends real traffic from the client namespace
(``tests.kernel.load``) to real nginx / UDP echo servers in the real-server namespaces.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from saru.control import request_sync
from saru.control.codec import table_from_list, table_to_list
from saru.dataplane.nft.connections import FILTERED_DUMPS_MAX
from saru.dataplane.nft.names import service_id
from saru.model import Dest, Service, ServiceKey, ServiceSettings, Table
from tests.helpers import require
from tests.lab.guide import CLIENT, REALS, VIP, VIP6, Topology

pytestmark = pytest.mark.timeout(90)


class Ctl:
    """The nftctl process in the director namespace."""

    def __init__(self, topo: Topology, *args: str) -> None:
        self.proc = topo.python("ld1", "tests.kernel.nftctl", *args, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert json.loads(self._line())["ready"]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            assert self.proc.stderr is not None
            raise AssertionError(f"nftctl died: {self.proc.stderr.read()}")
        return line

    def call(self, expect_ok: bool = True, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self._line())
        assert answer["ok"] is expect_ok, answer
        return answer

    def apply(self, *services: Service) -> list[str]:
        ops: list[str] = self.call(op="apply", table=table_to_list(Table.of(services)))["ops"]
        return ops

    def read(self) -> Table:
        return table_from_list(self.call(op="read")["table"])

    def nft(self, script: str, json_out: bool = False) -> str:
        output: str = self.call(op="nft", script=script, json=json_out)["output"]
        return output


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Topology]:
    ok, why = Topology.available()
    require(ok, why)
    with Topology(tmp_path) as t:
        yield t


def service(port: int, dests: list[Dest], scheduler: str = "rr", protocol: str = "tcp", vip: str = VIP,
            persistent: int | None = None, family: int = 4) -> Service:
    key = ServiceKey(protocol, vip, port, None, family)  # type: ignore[arg-type]
    return Service(key, ServiceSettings(scheduler, persistent), {d.key: d for d in dests})


def nat(role: str, port: int = 80, weight: int = 1, v6: bool = False) -> Dest:
    return Dest(REALS[role][1 if v6 else 0], port, "masq", weight)


def gate(role: str, port: int = 80, weight: int = 1, v6: bool = False) -> Dest:
    return Dest(REALS[role][3 if v6 else 2], port, "gate", weight)


def burst(topo: Topology, url: str, n: int, concurrency: int = 4) -> dict[str, Any]:
    got = topo.run("cl", sys.executable, "-m", "tests.kernel.load", "burst", url, str(n), str(concurrency),
                   timeout=60)
    result: dict[str, Any] = json.loads(got.stdout.strip().splitlines()[-1])
    return result


def counter_packets(listing: str, comment_part: str) -> int:
    for item in json.loads(listing)["nftables"]:
        rule = item.get("rule")
        if rule and comment_part in str(rule.get("comment", "")):
            for e in rule["expr"]:
                if "counter" in e:
                    return int(e["counter"]["packets"])
    raise AssertionError(f"no rule with comment {comment_part!r}")


def set_sizes(listing: str) -> dict[str, int]:
    return {item["set"]["name"]: len(item["set"].get("elem", []))
            for item in json.loads(listing)["nftables"] if "set" in item}


# --------------------------------------------------------------------------------------------------


def test_nat_round_robin_ipv4_and_ipv6_foreign_table_survives(topo: Topology) -> None:
    topo.mode("nat")
    topo.nginx("fe1")
    topo.nginx("fe2")
    probe = topo.run("ld1", sys.executable, "-c", "from saru.dataplane.select import availability; "
                     "print(availability('nft'))")
    assert probe.stdout.strip() == "(True, 'nf_tables through libnftables')"
    ctl = Ctl(topo)
    ctl.nft("add table ip foreign\nadd chain ip foreign c\nadd rule ip foreign c counter comment \"keep me\"")
    v4 = service(80, [nat("fe1"), nat("fe2")])
    v6 = service(80, [nat("fe1", v6=True), nat("fe2", v6=True)], vip=VIP6, family=6)
    ctl.apply(v4, v6)
    result = burst(topo, f"http://{VIP}/", 40, concurrency=1)
    assert result["failed"] == 0, result
    assert result["servers"] == {"fe1": 20, "fe2": 20}  # exact round robin per connection
    result6 = burst(topo, f"http://[{VIP6}]/", 10, concurrency=1)
    assert result6 == {"servers": {"fe1": 5, "fe2": 5}, "errors": [], "failed": 0}
    stats = ctl.call(op="stats")["stats"][f"tcp {VIP}:80"]
    assert stats["connections"] == 40 and stats["dests"] == {"10.77.7.11:80": 20, "10.77.7.12:80": 20}
    # restart adoption: a fresh data plane reads back exactly the table, so nothing is written
    ctl.call(op="restart")
    assert ctl.read() == Table.of([v4, v6])
    assert ctl.apply(v4, v6) == []
    # weights 3:1, then removal of every service: the foreign table is never touched
    ctl.apply(service(80, [nat("fe1", weight=3), nat("fe2")], scheduler="wrr"))
    assert burst(topo, f"http://{VIP}/", 40, concurrency=1)["servers"] == {"fe1": 30, "fe2": 10}
    ctl.apply()
    assert "table inet saru" not in ctl.nft("list ruleset")
    assert 'comment "keep me"' in ctl.nft("list table ip foreign")


def test_nat_remove_and_add_real_under_load_loses_nothing(topo: Topology) -> None:
    topo.mode("nat")
    topo.nginx("fe1")
    topo.nginx("fe2")
    ctl = Ctl(topo)
    both = service(80, [nat("fe1"), nat("fe2")])
    ctl.apply(both)
    load = topo.python("cl", "tests.kernel.load", "burst", f"http://{VIP}/", "3000", "8", "500",
                       stdout=subprocess.PIPE)
    assert load.stdout is not None
    assert json.loads(load.stdout.readline()) == {"progress": 500}
    ctl.apply(service(80, [nat("fe1")]))
    assert json.loads(load.stdout.readline()) == {"progress": 1000}
    ctl.apply(service(80, [nat("fe1"), nat("fe2", weight=0)]))  # quiescent
    assert json.loads(load.stdout.readline()) == {"progress": 1500}
    ctl.apply(both)
    lines = [json.loads(line) for line in load.stdout]
    load.wait(30)
    final = lines[-1]
    assert final["failed"] == 0, final
    assert sum(final["servers"].values()) == 3000
    assert final["servers"]["fe2"] > 100


def test_dr_replies_bypass_director_and_changes_lose_nothing(topo: Topology) -> None:
    topo.mode("dr")
    topo.nginx("fe1")
    topo.nginx("fe2")
    ctl = Ctl(topo)
    # a foreign table of the operator's, ahead of Saru's ingress chain: counts what reaches the director
    ctl.nft(f"""add table netdev watch
add chain netdev watch in {{ type filter hook ingress device "eth0" priority -10; policy accept; }}
add rule netdev watch in ip daddr {VIP} tcp dport 80 counter comment "to vip"
add rule netdev watch in ip saddr {VIP} tcp sport 80 counter comment "from vip"
""")
    both = service(80, [gate("fe1"), gate("fe2")])
    ctl.apply(both)
    result = burst(topo, f"http://{VIP}/", 200, concurrency=4)
    assert result["failed"] == 0, result
    assert set(result["servers"]) == {"fe1", "fe2"} and min(result["servers"].values()) > 40, result
    # on the wire: the director saw every client→VIP packet and not one reply (real → router → client)
    watch = ctl.nft("list table netdev watch", json_out=True)
    assert counter_packets(watch, "to vip") >= 200 * 4  # SYN, ACK, request, FIN… per connection
    assert counter_packets(watch, "from vip") == 0
    listing = ctl.nft("list table netdev saru", json_out=True)
    forwarded = sum(counter_packets(listing, f"saru D gate {REALS[r][2]} ") for r in ("fe1", "fe2"))
    assert forwarded == counter_packets(watch, "to vip")
    # closed connections left the flow sets for the short-lived closing sets
    sizes = set_sizes(listing)
    assert sum(n for name, n in sizes.items() if name.startswith("f_")) == 0, sizes
    assert sum(n for name, n in sizes.items() if name.startswith("z_")) >= 190, sizes  # ports may recur
    # remove fe2, quiesce it, add it back — under load, zero failed requests
    load = topo.python("cl", "tests.kernel.load", "burst", f"http://{VIP}/", "3000", "8", "500",
                       stdout=subprocess.PIPE)
    assert load.stdout is not None
    assert json.loads(load.stdout.readline()) == {"progress": 500}
    ctl.apply(service(80, [gate("fe1")]))
    assert json.loads(load.stdout.readline()) == {"progress": 1000}
    ctl.apply(service(80, [gate("fe1"), gate("fe2", weight=0)]))
    assert json.loads(load.stdout.readline()) == {"progress": 1500}
    ctl.apply(both)
    lines = [json.loads(line) for line in load.stdout]
    load.wait(30)
    assert lines[-1]["failed"] == 0, lines[-1]
    assert lines[-1]["servers"]["fe2"] > 100, lines[-1]
    # adoption after a restart writes nothing (draining leftovers are not part of the table)
    ctl.call(op="restart")
    assert ctl.read() == Table.of([both])
    assert ctl.apply(both) == []
    assert "table netdev watch" in ctl.nft("list tables")


def test_dr_quiescent_real_keeps_established_connection(topo: Topology) -> None:
    topo.mode("dr")
    topo.nginx("fe1")
    topo.nginx("fe2")
    ctl = Ctl(topo)
    ctl.apply(service(80, [gate("fe1"), gate("fe2")]))
    servers, clients = keepalive_clients(topo, {"fe1", "fe2"})
    ctl.apply(service(80, [gate("fe1"), gate("fe2", weight=0)]))
    fresh = burst(topo, f"http://{VIP}/", 30)
    assert fresh["servers"] == {"fe1": 30}, fresh
    for name, client in servers.items():  # both established connections still work, on their real
        assert ask(client) == {"server": name, "status": 200}
    for client in clients:
        assert client.stdin is not None
        client.stdin.close()


def keepalive_clients(topo: Topology, wanted: set[str]) -> tuple[dict[str, subprocess.Popen[str]], list[Any]]:
    """Open keep-alive connections to the VIP until each real in ``wanted`` holds one."""
    clients: list[subprocess.Popen[str]] = []
    servers: dict[str, subprocess.Popen[str]] = {}
    for _ in range(16):
        client = topo.python("cl", "tests.kernel.load", "keepalive", VIP, "80", stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
        clients.append(client)
        name = ask(client)["server"]
        servers.setdefault(name, client)
        if wanted <= set(servers):
            break
    assert wanted <= set(servers), servers
    return servers, clients


def ask(client: subprocess.Popen[str]) -> dict[str, Any]:
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write("go\n")
    client.stdin.flush()
    answer: dict[str, Any] = json.loads(client.stdout.readline())
    return answer


def test_dr_removed_real_drains_then_disappears(topo: Topology) -> None:
    topo.mode("dr")
    topo.nginx("fe1")
    topo.nginx("fe2")
    ctl = Ctl(topo, "--closing-timeout", "1")
    ctl.apply(service(80, [gate("fe1"), gate("fe2")]))
    servers, clients = keepalive_clients(topo, {"fe2"})
    ctl.apply(service(80, [gate("fe1")]))
    assert burst(topo, f"http://{VIP}/", 20)["servers"] == {"fe1": 20}
    # like IPVS, the removed real keeps its established connections (while it lives)
    assert ask(servers["fe2"]) == {"server": "fe2", "status": 200}
    assert " drain" in ctl.nft("list table netdev saru")
    ctl.apply(service(80, [gate("fe1")]))  # nothing to change; the draining real still has a flow
    assert " drain" in ctl.nft("list table netdev saru")
    for client in clients:
        assert client.stdin is not None
        client.stdin.close()
        client.wait(5)
    deadline = time.monotonic() + 10
    while " drain" in ctl.nft("list table netdev saru"):  # the closing set empties after ~1 s
        assert time.monotonic() < deadline, ctl.nft("list table netdev saru")
        time.sleep(0.2)
        ctl.apply(service(80, [gate("fe1")]))
    assert REALS["fe2"][2] not in ctl.nft("list table netdev saru")
    assert ctl.read() == Table.of([service(80, [gate("fe1")])])


def test_persistence_fallback_and_udp(topo: Topology) -> None:
    topo.mode("nat")
    topo.nginx("fe1")
    topo.nginx("fe2")
    topo.udp_echo("fe1")
    topo.udp_echo("fe2")
    ctl = Ctl(topo)
    # persistence: one client sticks to one real across connections
    ctl.apply(service(80, [nat("fe1"), nat("fe2")], persistent=30))
    result = burst(topo, f"http://{VIP}/", 20, concurrency=1)
    assert len(result["servers"]) == 1 and result["failed"] == 0, result
    # fallback: the planner swaps the reals for the fallback server, here ldirectord's classic
    # 127.0.0.1:80 (gate) — served by the director itself
    topo.nginx("ld1")
    ctl.apply(service(80, [Dest("127.0.0.1", 80, "gate", 1)]))
    assert burst(topo, f"http://{VIP}/", 5) == {"servers": {"ld1": 5}, "errors": [], "failed": 0}
    # UDP, rr over new flows
    udp = service(5353, [nat("fe1", port=5353), nat("fe2", port=5353)], protocol="udp")
    ctl.apply(service(80, [nat("fe1"), nat("fe2")]), udp)
    got = topo.run("cl", sys.executable, "-m", "tests.kernel.load", "udp", VIP, "5353", "20")
    assert json.loads(got.stdout) == {"servers": {"fe1": 10, "fe2": 10}, "failed": 0}
    # a firewall-mark virtual: the operator's own table marks VIP:8080 in prerouting (mangle)
    ctl.nft(f"""add table ip marks
add chain ip marks pre {{ type filter hook prerouting priority mangle; policy accept; }}
add rule ip marks pre ip daddr {VIP} tcp dport 8080 meta mark set 7
""")
    fwm = Service(ServiceKey("fwm", "", 0, 7), ServiceSettings("rr"),
                  {(REALS["fe2"][0], 0): Dest(REALS["fe2"][0], 0, "masq", 1)})
    ctl.apply(fwm)
    assert burst(topo, f"http://{VIP}:8080/", 6)["servers"] == {"fe2": 6}


def test_dr_udp_and_sh_consistent(topo: Topology) -> None:
    topo.mode("dr")
    topo.udp_echo("fe1")
    topo.udp_echo("fe2")
    topo.nginx("fe1")
    topo.nginx("fe2")
    ctl = Ctl(topo)
    ctl.apply(service(5353, [gate("fe1", 5353), gate("fe2", 5353)], protocol="udp"),
              service(80, [gate("fe1"), gate("fe2")], scheduler="sh"))
    got = topo.run("cl", sys.executable, "-m", "tests.kernel.load", "udp", VIP, "5353", "40")
    udp = json.loads(got.stdout)
    assert udp["failed"] == 0 and set(udp["servers"]) == {"fe1", "fe2"}, udp
    sh = burst(topo, f"http://{VIP}/", 20)
    assert sh["failed"] == 0 and len(sh["servers"]) == 1, sh  # source hash: one client, one real
    # a direct-routed firewall-mark virtual: the mark must be set at ingress, before Saru's chain
    ctl.nft(f"""add table netdev marks
add chain netdev marks in {{ type filter hook ingress device "eth0" priority -10; policy accept; }}
add rule netdev marks in ip daddr {VIP} tcp dport 8080 meta mark set 9
""")
    fwm = Service(ServiceKey("fwm", "", 0, 9), ServiceSettings("rr"),
                  {(d.address, 0): Dest(d.address, 0, "gate", 1) for d in (gate("fe1"), gate("fe2"))})
    ctl.apply(fwm)
    marked = burst(topo, f"http://{VIP}:8080/", 40)
    assert marked["failed"] == 0 and set(marked["servers"]) == {"fe1", "fe2"}, marked


def test_dr_ipv6_and_persistence(topo: Topology) -> None:
    topo.mode("dr")
    topo.nginx("fe1")
    topo.nginx("fe2")
    ctl = Ctl(topo)
    reals = [gate("fe1", v6=True), gate("fe2", v6=True)]
    ctl.apply(service(80, reals, vip=VIP6, family=6))
    spread = burst(topo, f"http://[{VIP6}]/", 60)
    assert spread["failed"] == 0 and set(spread["servers"]) == {"fe1", "fe2"}, spread
    ctl.apply(service(80, reals, vip=VIP6, family=6, persistent=30),
              service(80, [gate("fe1"), gate("fe2")], persistent=30))
    for url in (f"http://[{VIP6}]/", f"http://{VIP}/"):
        sticky = burst(topo, url, 30)
        assert sticky["failed"] == 0 and len(sticky["servers"]) == 1, sticky  # one client, one real


LDIRECTORD_CF = """\
checktimeout=1
checkinterval=1
autoreload=no
logfile="{log}"
quiescent=no

virtual={vip}:80
\treal={fe1}:80 gate
\treal={fe2}:80 gate
\tfallback=127.0.0.1:80 gate
\tservice=http
\trequest="haCheker/haCheck.html"
\treceive="up and running"
\tscheduler=rr
\tprotocol=tcp
\tchecktype=negotiate
"""


def test_daemon_follows_health_on_nft(topo: Topology, tmp_path: Path) -> None:
    topo.mode("dr")
    roots = {role: topo.nginx(role) for role in ("fe1", "fe2")}
    topo.nginx("ld1")  # the fallback 127.0.0.1:80: a "sorry" server on the director itself
    cf = tmp_path / "ldirectord.cf"
    cf.write_text(LDIRECTORD_CF.format(log=tmp_path / "saru.log", vip=VIP, fe1=REALS["fe1"][2],
                                       fe2=REALS["fe2"][2]))
    control = tmp_path / "control.sock"
    daemon = topo.python("ld1", "saru", "run", "-c", str(cf), "--dataplane", "nft", "--control",
                         str(control), "--pidfile", str(tmp_path / "saru.pid"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def dests() -> set[str]:
        try:
            answer = request_sync(control, "table", timeout=2)
        except OSError:
            return {"(no daemon yet)"}
        return {f"{d['address']}" for s in answer.get("table", []) for d in s["dests"]}

    def wait_dests(expected: set[str], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while (got := dests()) != expected:
            if daemon.poll() is not None:
                assert daemon.stderr is not None
                raise AssertionError(f"daemon exited: {daemon.stderr.read()}")
            assert time.monotonic() < deadline, f"table {got}, expected {expected}"
            time.sleep(0.1)

    fe1, fe2 = REALS["fe1"][2], REALS["fe2"][2]
    wait_dests({fe1, fe2})
    assert "fe1" in burst(topo, f"http://{VIP}/", 10)["servers"]
    (roots["fe2"] / "haCheker" / "haCheck.html").unlink()
    wait_dests({fe1})
    (roots["fe1"] / "haCheker" / "haCheck.html").unlink()
    wait_dests({"127.0.0.1"})
    assert burst(topo, f"http://{VIP}/", 5)["servers"] == {"ld1": 5}
    (roots["fe2"] / "haCheker" / "haCheck.html").write_text("up and running\n")
    wait_dests({fe2})
    assert burst(topo, f"http://{VIP}/", 10)["servers"] == {"fe2": 10}
    daemon.terminate()
    assert daemon.wait(15) == 0
    leftover = topo.run("ld1", sys.executable, "-c",
                        "from saru.dataplane.nft.libnft import Nft; print(Nft().run('list ruleset'))")
    assert "saru" not in leftover.stdout  # cleanstop removed Saru's tables


def test_refused_transaction_keeps_the_previous_table_and_state_in_sync(topo: Topology) -> None:
    topo.mode("nat")
    topo.nginx("fe1")
    topo.nginx("fe2")
    ctl = Ctl(topo)
    web = service(80, [nat("fe1"), nat("fe2")])
    assert ctl.call(op="apply", table=table_to_list(Table.of([web])))["how"] == "incremental"
    # an incremental change: only the slot map's elements and the service chain are written
    ctl.apply(service(80, [nat("fe1"), nat("fe2", weight=0)]))
    assert burst(topo, f"http://{VIP}/", 6, concurrency=1)["servers"] == {"fe1": 6}
    ctl.apply(web)
    # someone else puts an object where Saru's next service needs its slot map: the kernel
    # refuses the whole transaction (and the full rewrite tried after re-reading the kernel)
    other = service(8080, [nat("fe1"), nat("fe2")])
    ctl.nft(f"add map inet saru m_{service_id(other.key)} {{ type ipv4_addr : ipv4_addr; }}")
    refused = ctl.call(expect_ok=False, op="apply", table=table_to_list(Table.of([web, other])))
    assert "refused" in refused["error"]
    assert ctl.read() == Table.of([web])  # in-memory state re-read from the kernel: the old table
    assert burst(topo, f"http://{VIP}/", 10, concurrency=1)["servers"] == {"fe1": 5, "fe2": 5}
    assert f"s_{service_id(other.key)}" not in ctl.nft("list table inet saru")
    ctl.nft(f"delete map inet saru m_{service_id(other.key)}")
    ctl.apply(web, other)  # in sync: the next apply works
    assert ctl.read() == Table.of([web, other])


def test_connections_and_zero(topo: Topology) -> None:
    topo.mode("nat")
    topo.nginx("fe1")
    topo.nginx("fe2")
    ctl = Ctl(topo)
    web = service(80, [nat("fe1"), nat("fe2")])
    ctl.apply(web)
    assert burst(topo, f"http://{VIP}/", 10, concurrency=1)["failed"] == 0
    conns = [c for c in ctl.call(op="connections")["connections"] if c["virtual"] == [VIP, 80]]
    assert len(conns) == 10, conns  # closed, but conntrack keeps them (TIME_WAIT), like IPVS
    assert {tuple(c["dest"]) for c in conns} == {(REALS["fe1"][0], 80), (REALS["fe2"][0], 80)}
    assert all(c["protocol"] == "TCP" and c["state"] == "TIME_WAIT" and c["expires"] > 0 for c in conns)
    before = ctl.call(op="stats")["stats"][f"tcp {VIP}:80"]
    assert before["bytes_in"] > 0 and before["dests"] == {"10.77.7.11:80": 5, "10.77.7.12:80": 5}
    ctl.call(op="zero")
    assert ctl.call(op="stats")["stats"][f"tcp {VIP}:80"]["bytes_in"] == 0
    assert ctl.read() == Table.of([web])  # zeroing changed nothing else
    assert burst(topo, f"http://{VIP}/", 4, concurrency=1)["failed"] == 0


def test_connections_of_many_nat_virtuals_from_one_conntrack_dump(topo: Topology) -> None:
    """Past FILTERED_DUMPS_MAX virtuals, conntrack is read once and sorted by virtual (one kernel
    walk, not one per virtual): every entry still lands on its own virtual, none on the others."""
    topo.mode("nat")
    topo.nginx("fe1")
    topo.nginx("fe2")
    ctl = Ctl(topo)
    web = service(80, [nat("fe1"), nat("fe2")])
    others = [service(8000 + n, [nat("fe1"), nat("fe2")]) for n in range(1, FILTERED_DUMPS_MAX + 2)]
    ctl.apply(web, *others)
    assert burst(topo, f"http://{VIP}/", 6, concurrency=1)["failed"] == 0
    conns = ctl.call(op="connections")["connections"]
    assert len([c for c in conns if c["virtual"] == [VIP, 80]]) == 6, conns
    assert [c for c in conns if c["virtual"] != [VIP, 80]] == []
    stats = ctl.call(op="stats")["stats"]
    assert stats[f"tcp {VIP}:80"]["dests"] == {"10.77.7.11:80": 3, "10.77.7.12:80": 3}
    assert all(sum(stats[f"tcp {VIP}:{8000 + n}"]["dests"].values()) == 0 for n in range(1, FILTERED_DUMPS_MAX + 2))


def test_dr_connections_from_flow_sets_and_zero(topo: Topology) -> None:
    topo.mode("dr")
    topo.nginx("fe1")
    topo.nginx("fe2")
    ctl = Ctl(topo)
    ctl.apply(service(80, [gate("fe1"), gate("fe2")]))
    servers, clients = keepalive_clients(topo, {"fe1", "fe2"})
    conns = ctl.call(op="connections")["connections"]
    established = [c for c in conns if c["state"] == "ESTABLISHED"]
    assert len(established) >= 2, conns
    assert {c["dest"][0] for c in established} >= {REALS["fe1"][2], REALS["fe2"][2]}
    assert all(c["virtual"] == [VIP, 80] and c["client"][0] == CLIENT for c in established)
    assert ctl.call(op="stats")["stats"][f"tcp {VIP}:80"]["dest_bytes"] > 0
    ctl.call(op="zero")
    assert ctl.call(op="stats")["stats"][f"tcp {VIP}:80"]["dest_bytes"] == 0
    for name, client in servers.items():  # zeroing kept the flows: the connections still work
        assert ask(client) == {"server": name, "status": 200}
    for client in clients:
        assert client.stdin is not None
        client.stdin.close()
