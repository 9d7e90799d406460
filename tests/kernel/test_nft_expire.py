"""``expire_nodest_conn`` on the nftables plane, on the real kernel (namespaces of ``tests.lab.guide``).

With it on, a NAT real removed from the table loses its conntrack entries and a direct-routed one its
flow set at the same apply: the client's next request on its kept-alive connection is answered by a
reset instead of waiting on the removed real; the other real's connection is untouched. (Off, removed
reals drain: tests/kernel/test_nft_dataplane.py.)
"""

from __future__ import annotations

import pytest

from tests.kernel.test_nft_dataplane import Ctl, ask, gate, keepalive_clients, nat, service, topo
from tests.lab.guide import REALS, Topology

pytestmark = pytest.mark.timeout(90)
__all__ = ["topo"]  # the fixture


@pytest.mark.parametrize("mode", ["nat", "dr"])
def test_a_removed_real_s_connections_end_at_once(topo: Topology, mode: str) -> None:
    topo.mode(mode)
    topo.nginx("fe1")
    topo.nginx("fe2")
    dest = nat if mode == "nat" else gate
    ctl = Ctl(topo)
    ctl.call(op="expire", on=True)
    ctl.apply(service(80, [dest("fe1"), dest("fe2")]))
    servers, clients = keepalive_clients(topo, {"fe1", "fe2"})
    ctl.apply(service(80, [dest("fe1")]))
    if mode == "nat":
        left = [c for c in ctl.call(op="connections")["connections"] if c["dest"][0] == REALS["fe2"][0]]
        assert left == [], left
    else:
        assert " drain" not in ctl.nft("list table netdev saru")
    assert "error" in ask(servers["fe2"]), "the removed real's connection still works"
    assert ask(servers["fe1"]) == {"server": "fe1", "status": 200}
    assert ctl.read().services[service(80, []).key].dests.keys() == {dest("fe1").key}
    for client in clients:
        assert client.stdin is not None
        client.stdin.close()
        client.wait(5)
