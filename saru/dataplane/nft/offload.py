"""Flowtable offload of established conntrack-NAT flows (pure rendering).

With ``[nft] flowtable = ["eth0", "eth1"]`` (stateful NAT only) Saru's ``inet`` table also holds:

* ``flowtable ft`` on those devices (ingress hook): once a flow is in it, its packets are NATed
  and forwarded right at the device's ingress — no prerouting, no forward chain, no conntrack
  lookup per packet — until it ends (FIN/RST), idles out of the flowtable or its conntrack entry
  is deleted, after which it falls back to the ordinary path;
* ``ft_fwd`` (forward, priority filter): ``ct state established ct status dnat`` flows whose
  original destination is a virtual of the plane (``ft_v4``/``ft_v6``) and whose translated
  destination is one of its reals (``ft_r4``/``ft_r6``) are added to ``ft`` (``flow add @ft``).
  Nothing else of the host is offloaded. The sets are static, so a change of reals is a few
  element updates in the same transaction as the rest of the apply.

Firewall-mark virtuals (the mark is not in the conntrack tuple) and reals on the director itself
(their packets are delivered locally, never forwarded) are not offloaded. New connections are
always scheduled by the NAT chains: health changes, quiescing and removal act on new flows as
without offload. An established flow to a real that left its virtual keeps running, offloaded or
not (conntrack's binding, as without offload) unless ``expire_nodest_conn`` deletes its conntrack
entry — which also tears the offloaded flow down (the flowtable drops flows whose entry is dying).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from saru.dataplane.nft.environment import is_loopback
from saru.dataplane.nft.transaction import Objects
from saru.dataplane.nft.validation import device_name
from saru.model import Service

__all__ = ["FLOWTABLE", "FWD_CHAIN", "flowtable_spec", "listed_spec", "render_offload"]

FLOWTABLE = "ft"
FWD_CHAIN = "ft_fwd"


def flowtable_spec(devices: Iterable[str]) -> str:
    """The flowtable's declaration (canonical: ``listed_spec`` gives the same text back)."""
    names = ", ".join(f'"{device_name(d)}"' for d in sorted(set(devices)))
    return f"hook ingress priority filter; devices = {{ {names} }};"


def listed_spec(obj: Mapping[str, Any]) -> str | None:
    """The declaration of a flowtable as nft's JSON listing shows it (None: not one Saru writes)."""
    devices = obj.get("dev", [])
    devices = [devices] if isinstance(devices, str) else devices
    if obj.get("hook") != "ingress" or obj.get("prio") != 0 or not isinstance(devices, list) or not devices:
        return None
    try:
        return flowtable_spec(str(d) for d in devices)
    except ValueError:
        return None


def render_offload(nat: Objects, services: Sequence[Service], devices: Sequence[str]) -> None:
    """The flowtable, its sets and the forward rule into ``nat`` (stateful NAT services only)."""
    vips: dict[int, set[str]] = {4: set(), 6: set()}
    reals: dict[int, set[str]] = {4: set(), 6: set()}
    for service in services:
        if service.key.protocol == "fwm":
            continue
        remote = [d.address for d in service.dests.values() if d.forward == "masq" and not is_loopback(d.address)]
        if remote:
            vips[service.key.family].add(service.key.address)
            reals[service.key.family].update(remote)
    if not any(reals.values()):
        return
    nat.flowtables[FLOWTABLE] = flowtable_spec(devices)
    nat.chain(FWD_CHAIN, "type filter hook forward priority filter; policy accept;")
    for family, ip in ((4, "ip"), (6, "ip6")):
        if not reals[family]:
            continue
        kind = "ipv4_addr" if family == 4 else "ipv6_addr"
        v_set, r_set = f"ft_v{family}", f"ft_r{family}"
        nat.sets[v_set] = f"type {kind};"
        nat.sets[r_set] = f"type {kind};"
        nat.elements[v_set] = {a: a for a in sorted(vips[family])}
        nat.elements[r_set] = {a: a for a in sorted(reals[family])}
        nat.rule(FWD_CHAIN, f"ct state established ct status dnat ct original {ip} daddr @{v_set} "
                            f"ct reply {ip} saddr @{r_set} flow add @{FLOWTABLE}")
