"""Stateless LVS-NAT: virtuals rewritten packet by packet, without conntrack (pure rendering).

With ``[nft] nat = "stateless"`` the NAT virtuals (``masq`` reals) are not ``dnat``\\ ed through
conntrack but rewritten by payload statements, both ways, and every packet of theirs is
``notrack``\\ ed (no conntrack entry is created, looked up or expired: conntrack is what costs
stateful NAT its ~15-25 % against a direct path). In Saru's ``inet`` table:

* ``sl_pre`` (prerouting, priority raw, before conntrack): a packet to a virtual goes to the
  service chain ``s_<sid>``, which picks a real with ``jhash`` of the client's address . port (or
  what the scheduler hashes: ``sh``/``mh``/``dh`` as for direct routing) into a weighted **Maglev
  table** of ``MAGLEV_SIZE`` slots — the same on every director, so a failover keeps the flows —
  and the real's chain ``d_<sid>_<did>`` rewrites the destination (``ip daddr set``, ``tcp dport
  set``) and ``notrack``\\ s it. A reply of a real (``saddr . l4proto . sport`` in the set of
  stateless reals, ``sl_back4``/``sl_back6``) not addressed to the director itself is
  ``notrack``\\ ed as well (the director's own health-check connections to the reals stay tracked).
* ``sl_fwd`` (forward, after routing, so the source is not yet the director's own VIP, which
  reverse-path checks would refuse): a reply is looked up in the static reverse map
  ``sl_rev4``/``sl_rev6`` (real address . l4proto . port → the virtual's chain ``v_<sid>``), which
  rewrites its source back to the VIP and the virtual port.

What it costs (the limits, also in docs/dataplanes.md): no state, so the choice of real is a
function of the packet alone. ``rr``/``wrr`` become weighted per-flow hashing (no exact round
robin); persistence, fwmark virtuals, loopback reals and a real serving two stateless virtuals are
refused (``check_stateless``); quiescing (weight 0) or removing a real moves its flows at once (no
draining: they are reset) and Maglev moves a few flows of other reals on each change of the set of
reals with a weight (changes of weights > 0 move a share of flows too); what conntrack helpers do
(FTP and other ALGs), the translation of ICMP errors (PMTU discovery through the director) and IP
fragments without their L4 header are not handled; whatever a stateless real sends from its service
port through the director is rewritten as a reply of its virtual (a client reaching the real's own
address and port through the director fails). Established flows survive any change that leaves
the Maglev table of their virtual as it is (other virtuals, thresholds, a new real of weight 0).
"""

from __future__ import annotations

from saru.dataplane.nft.environment import is_loopback
from saru.dataplane.nft.exprs import HASH_SEED, ip_keyword, vmap
from saru.dataplane.nft.names import RenderError, dest_comment, dest_id, service_comment, service_id
from saru.dataplane.nft.slots import maglev
from saru.dataplane.nft.transaction import Objects
from saru.model import Service
from saru.model.schedflags import flag_names

__all__ = ["FWD_CHAIN", "PRE_CHAIN", "check_stateless", "render_stateless", "start_stateless"]

PRE_CHAIN = "sl_pre"
FWD_CHAIN = "sl_fwd"


def _sets(family: int) -> tuple[str, str]:
    return (f"sl_back{family}", f"sl_rev{family}")


def check_stateless(service: Service) -> None:
    """Refuse what stateless NAT cannot do, with the reason."""
    key, settings = service.key, service.settings
    if key.protocol == "fwm":
        raise RenderError(f"{key}: stateless NAT cannot serve firewall-mark virtuals (the mark is set "
                          "after the raw hook where packets must be exempted from conntrack)")
    if settings.persistent is not None:
        raise RenderError(f"{key}: stateless NAT has no persistence (it keeps no state); use "
                          "scheduler sh for client affinity, or nat = \"stateful\"")
    for d in service.dests.values():
        if is_loopback(d.address):
            raise RenderError(f"{key}: stateless NAT cannot forward to the director itself ({d.hostport})")
        if d.port == 0:
            raise RenderError(f"{key}: stateless NAT needs the port of {d.address}")


def _slots(service: Service) -> tuple[list[int], list[str]]:
    """The Maglev table (slot → index into the sorted reals) and the real chains."""
    keys = sorted(service.dests)
    dests = [service.dests[k] for k in keys]
    sched = service.settings.scheduler
    if sched == "fo":
        live = [i for i, d in enumerate(dests) if d.weight > 0]
        best = max((dests[i].weight for i in live), default=0)
        first = next((i for i in live if dests[i].weight == best), None)
        weights = [1 if i == first else 0 for i in range(len(dests))]
    elif sched == "rr":  # rr ignores weights above 0
        weights = [1 if d.weight > 0 else 0 for d in dests]
    else:
        weights = [d.weight for d in dests]
    return maglev(keys, weights), [f"d_{service_id(service.key)}_{dest_id(k)}" for k in keys]


def _hash(service: Service, size: int) -> str:
    key, sched = service.key, service.settings.scheduler
    ip = ip_keyword(key.family)
    flags = flag_names(service.settings.schedflags, sched)
    if sched in ("sh", "mh"):
        fields = f"{ip} saddr" + (f" . {key.protocol} sport" if f"{sched}-port" in flags else "")
    elif sched == "dh":
        fields = f"{ip} daddr"
    else:
        fields = f"{ip} saddr . {key.protocol} sport"
    return f"jhash {fields} mod {size} seed {HASH_SEED:#x}"


def start_stateless(nat: Objects) -> None:
    """The base chains (once per table that has stateless virtuals)."""
    nat.chain(PRE_CHAIN, "type filter hook prerouting priority raw; policy accept;")
    nat.chain(FWD_CHAIN, "type filter hook forward priority filter; policy accept;")


def render_stateless(nat: Objects, service: Service) -> None:
    """One stateless NAT virtual into ``nat`` (``start_stateless`` must have run)."""
    check_stateless(service)
    key = service.key
    sid = service_id(key)
    ip, proto = ip_keyword(key.family), key.protocol
    back, rev = _sets(key.family)
    kind = "ipv6_addr" if key.family == 6 else "ipv4_addr"
    if back not in nat.sets:
        nat.sets[back] = f"type {kind} . inet_proto . inet_service;"
        nat.sets[rev] = f"type {kind} . inet_proto . inet_service : verdict;"
        nat.rule(PRE_CHAIN, f"{ip} saddr . meta l4proto . th sport @{back} fib daddr type != local notrack")
        nat.rule(FWD_CHAIN, f"{ip} saddr . meta l4proto . th sport vmap @{rev}")
    s_chain, v_chain = f"s_{sid}", f"v_{sid}"
    nat.chain(s_chain)
    nat.chain(v_chain)
    nat.rule(PRE_CHAIN, f"{ip} daddr {key.address} {proto} dport {key.port} goto {s_chain}")
    nat.rule(s_chain, f'counter comment "{service_comment(service)}"')
    table, chains = _slots(service)
    for (address, port), d_chain in zip(sorted(service.dests), chains, strict=True):
        d = service.dests[(address, port)]
        nat.chain(d_chain)
        # the counter counts new connections (TCP SYNs; every packet for UDP, which has none)
        syn = f"{proto} flags & (syn | ack) == syn " if proto == "tcp" else ""
        nat.rule(d_chain, f'{syn}counter comment "{dest_comment(d, "live")}"')
        set_port = "" if port == key.port else f" {proto} dport set {port}"
        nat.rule(d_chain, f"{ip} daddr set {address}{set_port} notrack accept")
        element = f"{address} . {proto} . {port}"
        if element in nat.elements.get(back, {}):
            raise RenderError(f"{key}: real {d.hostport} also serves another stateless virtual "
                              "(its replies could not be told apart)")
        nat.element(back, element, element)
        nat.element(rev, element, f"{element} : goto {v_chain}")
    if table:
        nat.rule(s_chain, f"{_hash(service, len(table))} vmap {vmap(table, chains)}")
    nat.rule(s_chain, "drop")
    nat.rule(v_chain, f"{ip} saddr set {key.address} {proto} sport set {key.port} accept")
