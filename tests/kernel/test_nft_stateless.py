"""Stateless LVS-NAT (``[nft] nat = "stateless"``) on the real kernel, with real nginx reals.

The UltraMonkey topology in ``saru-…`` namespaces (``tests.lab.guide``); the director's
``NftDataplane`` runs with ``nat="stateless"`` (``tests.kernel.nftctl --nat stateless``). What the
design promises (``saru.dataplane.nft.stateless``): connections are served and the replies come from
the VIP (else the client's TCP handshake could not complete), conntrack holds no entry for them,
established connections survive table changes that leave their virtual's Maglev table alone and
the removal of another real, and a restart in the other NAT mode rewrites the virtuals.
"""

from __future__ import annotations

import pytest

from saru.control.codec import table_to_list
from saru.model import Table
from tests.kernel.test_nft_dataplane import Ctl, ask, burst, keepalive_clients, nat, service
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
