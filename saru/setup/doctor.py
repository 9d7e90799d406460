"""``saru doctor``: the guide's director checklist, checked on the director itself.

What the guide asks of a director, and what LVS needs beyond it: IP forwarding (NAT needs it; direct
routing does not strictly, but the guide turns it on on both directors), no ICMP redirects on a
one-armed director, a reverse-path filter that does not drop clients, a kernel data plane (IPVS, or
nftables), connection tracking for NAT, the VIP on this host (or, with HA, legitimately on the peer),
whether a running firewalld lets in what the directors exchange (``saru.setup.firewalld``), and active
probes of the real servers:

* **DR**: each real must be on a directly attached network, must accept packets for the VIP (a TCP
  SYN to VIP:port in a frame for the real's MAC gets a SYN-ACK or RST back), and must *not* answer ARP
  for the VIP (an ARP probe for the VIP; every answering MAC is matched against the reals' MACs).
* **NAT**: each real must route its replies to clients through this director. A SYN from a client-like
  address (TEST-NET-3 ``203.0.113.254``, never a real client) is sent to the real in a frame from this
  director; if the real's route for client addresses points at the director, its SYN-ACK comes back in
  a frame from the real to this director. If not, a second SYN from the director's own address tells
  "routes elsewhere" (answers the director, not clients) apart from "does not answer at all".

This module is pure: ``make_plan`` (config → what to check), the ``check_*`` functions (``Facts`` →
``Item``) and the ``judge_*`` functions (what a probe observed → ``Item``). ``saru.setup.doctor_run``
reads the host into ``Facts``, runs the probes (``saru.setup.probe``) and calls these.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from saru.model import Config, Settings, format_hostport
from saru.setup import sysctl
from saru.setup.firewalld import Opening, openings
from saru.setup.item import Item, Status
from saru.setup.netinfo import Route

#: client-like source addresses for the NAT return-path probe (documentation ranges, RFC 5737 / 3849).
PROBE_SOURCES = ("203.0.113.254", "198.51.100.254", "192.0.2.254")
PROBE_SOURCES6 = ("2001:db8:5a2:ffff::254", "2001:db8:5a2:fffe::254")


@dataclass(frozen=True)
class RealRef:
    """A real server of the configuration, as the checks see it."""

    address: str
    port: int
    forward: str  # gate | masq | ipip
    protocol: str  # tcp | udp | fwm
    vip: str  # "" for a firewall-mark virtual

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.address).version


@dataclass(frozen=True)
class Plan:
    """What the configuration asks of this director."""

    vips: tuple[str, ...]  # virtual service addresses (and [ha] VIPs)
    reals: tuple[RealRef, ...]
    ha_vips: frozenset[str] = frozenset()
    ha_interface: str | None = None
    dataplane: str = "auto"
    #: what saru.toml needs let in by the host firewall (``saru.setup.firewalld``)
    firewall: tuple[Opening, ...] = ()

    def reals_by(self, forward: str) -> list[RealRef]:
        return [r for r in self.reals if r.forward == forward]

    @property
    def nat(self) -> bool:
        return any(r.forward == "masq" for r in self.reals)

    @property
    def dr(self) -> bool:
        return any(r.forward == "gate" for r in self.reals)


def make_plan(config: Config | None, settings: Settings | None) -> Plan:
    """The VIPs and reals to check (pure). Loopback reals (``127.0.0.1`` fallbacks) need nothing."""
    vips: list[str] = []
    reals: list[RealRef] = []
    seen: set[tuple[str, int, str, str]] = set()
    for v in config.virtuals if config else ():
        if v.address and v.address not in vips:
            vips.append(v.address)
        for r in v.reals:
            key = (r.address, r.port, r.forward, v.address)
            if ipaddress.ip_address(r.address).is_loopback or key in seen:
                continue
            seen.add(key)
            reals.append(RealRef(r.address, r.port, r.forward, v.protocol, v.address))
    ha = settings.ha if settings else None
    ha_vips = frozenset(ha.vip_addresses) if ha else frozenset()
    for vip in sorted(ha_vips):
        if vip not in vips:
            vips.append(vip)
    return Plan(tuple(vips), tuple(reals), ha_vips, ha.interface if ha else None,
                settings.director.dataplane if settings else "auto", openings(settings))


@dataclass
class Facts:
    """What the host says (filled by ``gather``; tests build it by hand)."""

    sysctls: dict[str, str | None] = field(default_factory=dict)
    local: dict[str, str] = field(default_factory=dict)  # local address → interface
    networks: dict[str, str] = field(default_factory=dict)  # local address → its "address/prefix"
    routes: dict[str, Route | None] = field(default_factory=dict)  # reals and VIPs
    default_interface: str | None = None
    ipvs: tuple[bool, str] = (False, "not checked")
    nft: tuple[bool, str] = (False, "not checked")
    conntrack: tuple[bool, str] = (False, "not checked")

    def value(self, key: str) -> int | None:
        text = self.sysctls.get(key)
        try:
            return int(text) if text is not None else None
        except ValueError:
            return None


def vip_interface(plan: Plan, facts: Facts, vip: str) -> str | None:
    """Where the VIP lives: the interface holding it, else [ha] interface, else the route towards it."""
    if vip in facts.local:
        return facts.local[vip]
    if vip in plan.ha_vips and plan.ha_interface:
        return plan.ha_interface
    route = facts.routes.get(vip)
    return route.interface if route and route.kind != "local" else None


def real_interface(facts: Facts, real: RealRef) -> str | None:
    route = facts.routes.get(real.address)
    return route.interface if route else None


def sysctl_keys(plan: Plan, facts: Facts) -> list[str]:
    """The sysctls the pure checks read (given the addresses and routes already gathered)."""
    keys = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]
    interfaces = {"all"}
    for vip in plan.vips:
        if (name := vip_interface(plan, facts, vip)) and name != "lo":
            interfaces.add(name)
    for real in plan.reals:
        if (name := real_interface(facts, real)) and name != "lo":
            interfaces.add(name)
    for name in sorted(interfaces):
        keys += [sysctl.conf_key(name, "send_redirects"), sysctl.conf_key(name, "rp_filter")]
    return keys


# --------------------------------------------------------------------------------------------------
# pure checks
# --------------------------------------------------------------------------------------------------


def _sysctl_fix(*pairs: tuple[str, object]) -> str:
    return "sysctl -w " + " ".join(f"{key}={value}" for key, value in pairs) + \
        " (and the same lines in /etc/sysctl.d/ to keep it)"


def check_forwarding(plan: Plan, facts: Facts) -> list[Item]:
    items = []
    for family, key in ((4, "net.ipv4.ip_forward"), (6, "net.ipv6.conf.all.forwarding")):
        reals = [r for r in plan.reals if r.family == family]
        if not reals and family == 6:
            continue
        nat = any(r.forward == "masq" for r in reals)
        name = f"IPv{family} forwarding ({key})"
        value = facts.value(key)
        if value == 1:
            items.append(Item(name, "ok", "on"))
        elif nat:
            items.append(Item(name, "fail", "off: NAT (masq) replies cannot be forwarded back to clients",
                              _sysctl_fix((key, 1))))
        else:
            why = ("off: direct routing works without it, but the guide turns it on on both directors"
                   if reals else "off (the guide turns it on on both directors)")
            items.append(Item(name, "warn", why, _sysctl_fix((key, 1))))
    return items


def _vip_interfaces(plan: Plan, facts: Facts) -> set[str]:
    """The interfaces holding the IPv4 VIPs (loopback and unknown ones left out)."""
    names = (vip_interface(plan, facts, vip) for vip in plan.vips if ":" not in vip)
    return {name for name in names if name is not None and name != "lo"}


def check_redirects(plan: Plan, facts: Facts) -> list[Item]:
    """One-armed: the VIP and some real behind the same interface → the kernel would send ICMP redirects."""
    items = []
    vip_ifs = _vip_interfaces(plan, facts)
    by_if: dict[str, list[RealRef]] = {}
    for real in plan.reals:
        name = real_interface(facts, real)
        if real.family == 4 and name in vip_ifs:
            by_if.setdefault(name, []).append(real)
    if not by_if:
        if plan.reals:
            items.append(Item("ICMP redirects (one-armed director)", "ok",
                              "two-armed: the reals are not behind the VIP's interface"))
        return items
    for name, reals in sorted(by_if.items()):
        keys = ("net.ipv4.conf.all.send_redirects", sysctl.conf_key(name, "send_redirects"))
        on = [k for k in keys if facts.value(k) != 0]
        label = f"ICMP redirects off on {name} (one-armed director)"
        if not on:
            items.append(Item(label, "ok", "send_redirects is 0 on all and on " + name))
            continue
        nat = any(r.forward == "masq" for r in reals)
        status: Status = "fail" if nat else "warn"
        why = ("NAT replies would earn the reals an ICMP redirect to bypass the director" if nat else
               "harmless for direct routing, but any routed traffic (NAT, fallback) would draw redirects")
        items.append(Item(label, status, f"{', '.join(on)} = 1: {why}", _sysctl_fix(*((k, 0) for k in keys))))
    return items


def check_rp_filter(plan: Plan, facts: Facts) -> list[Item]:
    """Strict reverse-path filtering drops clients arriving where the route back to them does not leave."""
    items = []
    modes = {0: "off", 1: "strict", 2: "loose"}
    names = sorted(_vip_interfaces(plan, facts))
    for name in names:
        values = [facts.value("net.ipv4.conf.all.rp_filter"), facts.value(sysctl.conf_key(name, "rp_filter"))]
        mode = max(v or 0 for v in values)
        label = f"reverse-path filter on {name}"
        if mode == 1 and facts.default_interface not in (None, name):
            items.append(Item(label, "fail", f"strict, but clients arriving on {name} are routed back through "
                              f"{facts.default_interface}: their packets are dropped",
                              _sysctl_fix(("net.ipv4.conf.all.rp_filter", 2),
                                          (sysctl.conf_key(name, "rp_filter"), 2))))
        else:
            items.append(Item(label, "ok", f"{modes.get(mode, str(mode))}; clients arrive where the route "
                                           "back to them leaves" if mode == 1 else modes.get(mode, str(mode))))
    return items


def check_dataplane(plan: Plan, facts: Facts) -> Item:
    name = "kernel data plane (IPVS or nftables)"
    ipvs_ok, ipvs_why = facts.ipvs
    nft_ok, nft_why = facts.nft
    wanted = plan.dataplane
    if wanted == "ipvs" or (wanted == "auto" and ipvs_ok):
        if ipvs_ok:
            return Item(name, "ok", f"IPVS: {ipvs_why}")
        return Item(name, "fail", f"[director] dataplane = ipvs, but {ipvs_why}", "modprobe ip_vs")
    if wanted == "nft" or (wanted == "auto" and nft_ok):
        if nft_ok:
            extra = "" if wanted == "nft" else f" (no IPVS: {ipvs_why})"
            return Item(name, "ok", f"nftables: {nft_why}{extra}")
        return Item(name, "fail", f"[director] dataplane = nft, but {nft_why}", "apt-get install nftables")
    if wanted == "proxy":
        status: Status = "fail" if plan.reals else "warn"
        return Item(name, status, "[director] dataplane = proxy: userspace proxy, no direct routing or NAT "
                    "to real servers at kernel speed", "set [director] dataplane = \"auto\"")
    return Item(name, "fail", f"neither IPVS ({ipvs_why}) nor nftables ({nft_why})",
                "modprobe ip_vs (or apt-get install nftables)")


def check_conntrack(plan: Plan, facts: Facts) -> list[Item]:
    if not plan.nat:
        return []
    ok, why = facts.conntrack
    if ok:
        return [Item("connection tracking (NAT)", "ok", why)]
    return [Item("connection tracking (NAT)", "fail", why, "modprobe nf_conntrack")]


def check_vip(plan: Plan, facts: Facts, vip: str, others: Sequence[str] | None) -> Item:
    """Is the VIP on this host? ``others`` = MACs (not reals) that answered ARP for it, None if not probed."""
    name = f"VIP {vip} on this director"
    if vip in facts.local:
        return Item(name, "ok", f"on {facts.local[vip]}")
    if vip in plan.ha_vips:
        if others is None:
            return Item(name, "standby", "not here; with [ha] the active director holds it")
        if len(others) == 1:
            return Item(name, "standby", f"held by the active director at {others[0]}")
        if not others:
            return Item(name, "fail", "on no director: nobody answers ARP for it",
                        "start saru on a director (the VRRP master adds it), or check [ha] on both")
        return Item(name, "fail", f"several hosts answer ARP for it: {', '.join(others)}",
                    "find the hosts with these MACs and remove the address there")
    iface = vip_interface(plan, facts, vip) or "eth0"
    prefix = 32 if ":" not in vip else 128
    return Item(name, "fail", "not on this host, and no [ha] section says a peer holds it",
                f"ip addr add {vip}/{prefix} dev {iface} (or configure [ha] vips in saru.toml)")


def check_dr_onlink(facts: Facts, real: RealRef) -> Item:
    name = f"DR real {real.address} on a directly attached network"
    route = facts.routes.get(real.address)
    if route is None:
        return Item(name, "fail", "no route to it", f"ip route get {real.address}")
    if route.kind == "local":
        return Item(name, "ok", "it is this director (served locally)")
    if route.gateway:
        return Item(name, "fail", f"routed via {route.gateway}: direct routing only reaches the VIP's own "
                    "network (the frame is rewritten to the real's MAC)",
                    f"use masq or ipip for {real.address}, or move it onto the {route.interface} network")
    return Item(name, "ok", f"on-link via {route.interface}")


@dataclass(frozen=True)
class ArpSeen:
    """The answers to an ARP probe for a VIP, and the MACs of the DR reals (None: did not answer ARP)."""

    vip: str
    interface: str
    answers: tuple[str, ...]  # MACs
    real_macs: Mapping[str, str | None]


def arp_name(vip: str) -> str:
    return f"no real server answers {'ARP' if ':' not in vip else 'neighbour solicitations'} for {vip}"


def judge_arp(seen: ArpSeen, vip_here: bool, ha: bool) -> tuple[Item, list[str]]:
    """The ARP item for a VIP, and the MACs that answered that are not reals (for ``check_vip``)."""
    by_mac: dict[str, list[str]] = {}
    for address, mac in seen.real_macs.items():
        if mac:
            by_mac.setdefault(mac, []).append(address)
    culprits = [(mac, by_mac[mac]) for mac in seen.answers if mac in by_mac]
    others = [mac for mac in seen.answers if mac not in by_mac]
    name = arp_name(seen.vip)
    if culprits:
        who = "; ".join(f"real {', '.join(addrs)} ({mac})" for mac, addrs in culprits)
        if ":" in seen.vip:  # Linux answers NS only for addresses of the receiving interface
            return Item(name, "fail", f"{who} answers neighbour solicitations for the VIP: it has the VIP on "
                        "its network interface, not only on lo; clients' packets go straight to it",
                        f"on that real: ip -6 addr del {seen.vip}/PREFIX dev IF; "
                        f"saru realserver apply --vip {seen.vip}"), others
        return Item(name, "fail", f"{who} answers ARP for the VIP: clients' packets go straight to it",
                    f"on that real: saru realserver apply --vip {seen.vip} (or sysctl -w "
                    "net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2)"), others
    if others and vip_here:
        return Item(name, "fail", f"another host ({', '.join(others)}) answers for the VIP this director "
                    "holds: an address conflict",
                    "find the host with that MAC (ip neigh; switch tables) and remove the VIP there"), others
    unresolved = [a for a, mac in seen.real_macs.items() if mac is None]
    detail = f"probed on {seen.interface}: only " + ("this director" if vip_here else
                                                      "the active director" if ha and others else "nobody")
    detail += " answers"
    if unresolved:
        return Item(name, "warn", detail + f"; could not learn the MAC of {', '.join(unresolved)}",
                    f"ping {unresolved[0]}"), others
    return Item(name, "ok", detail), others


def accepts_name(real: RealRef) -> str:
    what = format_hostport(real.vip, real.port) if real.protocol == "tcp" and real.port else real.vip
    return f"DR real {real.address} accepts packets for {what}"


def judge_accepts(real: RealRef, reply_kind: str | None) -> Item:
    """Whether a DR real took a packet for the VIP (the VIP on its loopback)."""
    name = accepts_name(real)
    if reply_kind == "syn-ack" or reply_kind == "echo-reply":
        return Item(name, "ok", f"answered ({reply_kind})")
    if reply_kind == "rst":
        return Item(name, "warn", f"the VIP is there but nothing listens on port {real.port} (RST)",
                    f"start the service on {real.address}:{real.port}")
    return Item(name, "fail", "no answer: the VIP is probably not on its loopback",
                f"on {real.address}: saru realserver apply --vip {real.vip}")


def judge_return_path(real: RealRef, via: str | None, expected_mac: str | None, reply_mac: str | None,
                      control: str | None, source: str) -> Item:
    """NAT: did the real's reply to a client-like address come back through this director?

    ``reply_mac``: Ethernet source of that reply (None: no reply); ``control``: kind of the reply to the
    director's own address (None: none); ``via``: the director's address on the real's network.
    """
    name = f"NAT real {real.address} routes replies through this director"
    ip = "ip -6" if real.family == 6 else "ip"
    gateway_fix = f"on {real.address}: {ip} route replace default via {via or 'THIS-DIRECTOR'}"
    if reply_mac is not None and (expected_mac is None or reply_mac == expected_mac):
        return Item(name, "ok", f"its reply to {source} came back to this director")
    if reply_mac is not None:
        return Item(name, "fail", f"its reply to {source} came back through another host ({reply_mac}), "
                    "not straight from it", gateway_fix)
    if control is not None:
        return Item(name, "fail", f"it answers this director but sends replies for other addresses (clients, "
                    f"e.g. {source}) elsewhere: its default route does not point at {via or 'this director'}",
                    gateway_fix)
    return Item(name, "warn", "it answered neither probe (firewall? service down?): return path not verified",
                f"on {real.address}: {ip} route get {source}   (must say 'via {via or 'this director'}')")


def own_address(plan: Plan, facts: Facts, route: Route, real: str) -> str | None:
    """This director's address towards a real: the route's preferred source unless it is a VIP (a real
    with the VIP on its loopback would keep the answer), else another address of that interface —
    one on the real's own network first."""
    if route.source and route.source not in plan.vips:
        return route.source
    target = ipaddress.ip_address(real)
    candidates = []
    for address, name in facts.local.items():
        ip = ipaddress.ip_address(address)
        if name == route.interface and ip.version == target.version and not ip.is_link_local \
                and address not in plan.vips:
            network = ipaddress.ip_interface(facts.networks.get(address, address)).network
            candidates.append((target not in network, address))
    return min(candidates)[1] if candidates else None


def probe_source(facts: Facts, family: int = 4) -> str:
    """A client-like address that is neither local nor on a directly attached network."""
    candidates = PROBE_SOURCES if family == 4 else PROBE_SOURCES6
    for candidate in candidates:
        route = facts.routes.get(candidate)
        if candidate not in facts.local and (route is None or (route.gateway and route.kind != "local")):
            return candidate
    return candidates[0]
