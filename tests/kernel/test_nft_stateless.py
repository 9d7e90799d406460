"""Stateless LVS-NAT (``[nft] nat = "stateless"``) on the real kernel, with real nginx reals.

The UltraMonkey topology in ``saru-…`` namespaces (``tests.lab.guide``); the director's
``NftDataplane`` runs with ``nat="stateless"`` (``tests.kernel.nftctl --nat stateless``). What the
design promises (``saru.dataplane.nft.stateless``): connections are served and the replies come from
the VIP (else the client's TCP handshake could not complete), conntrack holds no entry for them,
established connections survive table changes that leave their virtual's Maglev table alone and
the removal of another real, and a restart in the other NAT mode rewrites the virtuals; and the
daemon (``saru run --settings`` with ``[nft] nat = "stateless"``) refuses what stateless NAT cannot
serve before touching nftables, and otherwise serves and follows health checks that way.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from saru.control import request_sync
from saru.control.codec import table_to_list
from saru.model import Table
from tests.kernel.test_nft_dataplane import LDIRECTORD_CF, Ctl, ask, burst, keepalive_clients, nat, service
from tests.kernel.test_nft_dataplane import topo as topo  # the fixture: namespaces built and torn down
from tests.lab.guide import REALS, VIP, Topology

pytestmark = pytest.mark.timeout(90)


def tracked(topo: Topology, address: str) -> list[str]:
    """The director's conntrack entries that mention ``address``."""
    table = topo.run("ld1", "cat", "/proc/net/nf_conntrack").stdout
    return [line for line in table.splitlines() if f"={address} " in line]


def test_stateless_nat_serves_from_the_vip_without_conntrack_and_keeps_flows(topo: Topology) -> None:
    topo.mode("nat")
    topo.nginx("fe1")
    topo.nginx("fe2")
    ctl = Ctl(topo, "--nat", "stateless")
    web = service(80, [nat("fe1"), nat("fe2")])
    ctl.apply(web)
    assert ctl.read().services[web.key] == web  # read back from the rule comments
    rules = ctl.nft("list table inet saru")
    assert "notrack" in rules and "dnat" not in rules, rules

    got = burst(topo, f"http://{VIP}/", 60)
    assert got["errors"] == [] and set(got["servers"]) == {"fe1", "fe2"}, got
    assert tracked(topo, VIP) == [] and tracked(topo, REALS["fe1"][0]) == []
    assert ctl.call(op="connections")["connections"] == []
    stats = ctl.call(op="stats")["stats"][str(web.key)]
    assert stats["connections"] >= 60, stats  # the reals' counters count SYNs

    # the director's own connections to a real (health checks) are tracked and work
    check = topo.run("ld1", "curl", "-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}",
                     f"http://{REALS['fe1'][0]}/")
    assert check.stdout == "200"

    servers, clients = keepalive_clients(topo, {"fe1", "fe2"})
    try:
        # another virtual added, then removed: this virtual's Maglev table stays, so do its flows
        other = service(8080, [nat("fe1", port=8080), nat("fe2", port=8080)])
        ctl.apply(web, other)
        assert burst(topo, f"http://{VIP}:8080/", 20)["errors"] == []
        ctl.apply(web)
        for name, client in servers.items():
            assert ask(client) == {"server": name, "status": 200}
        # fe2 removed: its slots move to fe1, fe1 keeps its own, so fe1's connection lives on
        ctl.apply(service(80, [nat("fe1")]))
        assert ask(servers["fe1"]) == {"server": "fe1", "status": 200}
        assert burst(topo, f"http://{VIP}/", 20)["servers"] == {"fe1": 20}
    finally:
        for client in clients:
            assert client.stdin is not None
            client.stdin.close()
            client.wait(10)

    # a real may serve only one stateless virtual: refused, the table unchanged
    clash = service(81, [nat("fe1")])
    answer = ctl.call(expect_ok=False, op="apply", table=table_to_list(Table.of([service(80, [nat("fe1")]), clash])))
    assert "another stateless virtual" in answer["error"], answer
    assert burst(topo, f"http://{VIP}/", 10)["servers"] == {"fe1": 10}

    # restarted in the other mode with the same table: the virtual is rewritten (stateful dnat)
    ctl.proc.stdin.close()  # type: ignore[union-attr]
    ctl.proc.wait(10)
    stateful = Ctl(topo)
    assert stateful.apply(service(80, [nat("fe1")])) == []
    rules = stateful.nft("list table inet saru")
    assert "dnat" in rules and "notrack" not in rules, rules
    assert burst(topo, f"http://{VIP}/", 10)["servers"] == {"fe1": 10}
    assert tracked(topo, VIP)


#: the daemon test's ldirectord.cf with NAT reals and no fallback (stateless NAT has no local reals)
STATELESS_CF = LDIRECTORD_CF.replace(" gate\n", " masq\n").replace("\tfallback=127.0.0.1:80 masq\n", "") + "{extra}"


def test_daemon_with_stateless_nat_setting(topo: Topology, tmp_path: Path) -> None:
    topo.mode("nat")
    roots = {role: topo.nginx(role) for role in ("fe1", "fe2")}
    toml = tmp_path / "saru.toml"
    toml.write_text('[nft]\nnat = "stateless"\n')
    cf = tmp_path / "ldirectord.cf"
    fields = {"log": tmp_path / "saru.log", "vip": VIP, "fe1": REALS["fe1"][0], "fe2": REALS["fe2"][0]}
    cf.write_text(STATELESS_CF.format(**fields, extra="\tpersistent=60\n"))
    refused = topo.run("ld1", sys.executable, "-m", "saru", "run", "-c", str(cf), "--settings", str(toml),
                       "--dataplane", "nft", "--pidfile", str(tmp_path / "refused.pid"), check=False, timeout=30)
    assert refused.returncode == 2 and 'no persistence with [nft] nat = "stateless"' in refused.stderr, refused
    assert "saru" not in topo.run("ld1", "nft", "list", "tables").stdout  # refused before touching anything

    cf.write_text(STATELESS_CF.format(**fields, extra=""))
    control = tmp_path / "control.sock"
    daemon = topo.python("ld1", "saru", "run", "-c", str(cf), "--settings", str(toml), "--dataplane", "nft",
                         "--control", str(control), "--pidfile", str(tmp_path / "saru.pid"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:  # both reals healthy and in the table
            try:
                answer = request_sync(control, "table", timeout=2)
                if len([d for s in answer.get("table", []) for d in s["dests"]]) == 2:
                    break
            except OSError:
                pass
            assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
            assert time.monotonic() < deadline, "the daemon never applied both reals"
            time.sleep(0.1)
        assert "notrack" in topo.run("ld1", "nft", "list", "table", "inet", "saru").stdout
        got = burst(topo, f"http://{VIP}/", 20)
        assert got["errors"] == [] and set(got["servers"]) == {"fe1", "fe2"}, got
        assert tracked(topo, VIP) == []
        (roots["fe2"] / "haCheker" / "haCheck.html").unlink()  # health still drives the table
        deadline = time.monotonic() + 15
        while burst(topo, f"http://{VIP}/", 10)["servers"] != {"fe1": 10}:
            assert time.monotonic() < deadline, "fe2 still served after failing its check"
    finally:
        daemon.terminate()
        assert daemon.wait(15) == 0
