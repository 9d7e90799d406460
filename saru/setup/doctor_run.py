"""Running ``saru doctor`` on this host: read the facts, run the active probes, collect the items.

``gather`` reads sysctls, addresses, routes and data-plane availability through ``netinfo``/``sysctl``;
``run`` applies the pure checks of ``saru.setup.doctor`` in the guide's order, then probes the VIPs
(who answers ARP / neighbour solicitations for them), asks a running firewalld what it lets in
(``firewall-cmd``, exec'd without a shell), the DR reals (do they accept packets for the VIP)
and the NAT reals (do their replies to clients come back through here), through ``saru.setup.probe``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
from collections.abc import Callable
from pathlib import Path

from saru.dataplane.ipvs import module_installed
from saru.setup import firewalld, sysctl
from saru.setup.doctor import (
    PROBE_SOURCES,
    PROBE_SOURCES6,
    ArpSeen,
    Facts,
    Plan,
    RealRef,
    accepts_name,
    arp_name,
    check_conntrack,
    check_dataplane,
    check_dr_onlink,
    check_forwarding,
    check_redirects,
    check_rp_filter,
    check_vip,
    judge_accepts,
    judge_arp,
    judge_return_path,
    own_address,
    probe_source,
    sysctl_keys,
    vip_interface,
)
from saru.setup.item import Item
from saru.subproc import last_line, run_command

#: seconds one firewall-cmd call may take (it is a D-Bus client; firewalld answers in milliseconds)
FIREWALL_CMD_TIMEOUT = 10.0


def _ipvs() -> tuple[bool, str]:
    """IPVS without side effects (no modprobe: the daemon loads it when it starts)."""
    if Path("/proc/net/ip_vs").exists():
        return True, "the ip_vs module is loaded"
    if module_installed("ip_vs"):
        return True, "the ip_vs module is installed (loaded when saru starts)"
    return False, "no IPVS in this kernel (no /proc/net/ip_vs, no ip_vs module)"


def _nft() -> tuple[bool, str]:
    try:
        from saru.dataplane.select import availability

        ok, why = availability("nft")
    except Exception as exc:
        return False, str(exc)
    return ok, why


def _conntrack() -> tuple[bool, str]:
    count, limit = sysctl.read("net.netfilter.nf_conntrack_count"), sysctl.read("net.netfilter.nf_conntrack_max")
    if limit is not None:
        return True, f"nf_conntrack loaded ({count or '?'} of {limit} entries in use)"
    if module_installed("nf_conntrack"):
        return True, "the nf_conntrack module is installed (loaded on demand)"
    return False, "no nf_conntrack in this kernel"


async def _firewall_cmd(*args: str) -> tuple[int | None, str]:
    """``firewall-cmd ARGS`` (exec'd without a shell): exit status (None: timed out) and its output."""
    outcome = await run_command(["firewall-cmd", *args], FIREWALL_CMD_TIMEOUT)
    return outcome.returncode, (outcome.stdout + outcome.stderr).decode("utf-8", "replace")


async def _ask_firewalld(plan: Plan, facts: Facts) -> list[Item]:
    code, out = await _firewall_cmd("--state")
    if code != 0 or out.strip() != "running":
        return [Item("firewalld", "ok", f"not running ({last_line(out.encode()) or 'no answer'}): nothing to check")]
    (code, default), (code2, listing) = await asyncio.gather(_firewall_cmd("--get-default-zone"),
                                                             _firewall_cmd("--list-all-zones"))
    if code != 0 or code2 != 0:
        why = last_line((default + listing).encode())
        return [Item("firewalld", "warn", f"running, but cannot read its zones: {why}")]
    zones = firewalld.parse_zones(listing)
    # every service of the zones in question at once (firewall-cmd answers one per call); includes later
    names = sorted({firewalld.SERVICE, *(name for opening in plan.firewall
                                         if (zone := firewalld.zone_of(opening, zones, default.strip(), facts.local))
                                         for name in zone.services)})
    answers = await asyncio.gather(*(_firewall_cmd(f"--info-service={name}") for name in names))
    services = {name: firewalld.parse_service(text) if code == 0 else None
                for name, (code, text) in zip(names, answers, strict=True)}
    for _ in range(3):  # services that include others (rare): one more round per level
        wanted = sorted({i for info in services.values() if info for i in info.includes} - set(services))
        if not wanted:
            break
        answers = await asyncio.gather(*(_firewall_cmd(f"--info-service={name}") for name in wanted))
        services.update({name: firewalld.parse_service(text) if code == 0 else None
                         for name, (code, text) in zip(wanted, answers, strict=True)})
    return firewalld.judge(plan.firewall, zones, default.strip(), facts.local, services.get)


def check_firewalld(plan: Plan, facts: Facts) -> list[Item]:
    """The firewalld items: none when saru.toml needs nothing let in; "not installed" / "not running"
    (ok: nothing filters); else one per opening (``saru.setup.firewalld.judge``)."""
    if not plan.firewall:
        return []
    if shutil.which("firewall-cmd") is None:
        return [Item("firewalld", "ok", "not installed (no firewall-cmd): nothing to check")]
    return asyncio.run(_ask_firewalld(plan, facts))


def gather(plan: Plan) -> Facts:
    """Read the host: addresses, routes towards the VIPs and reals, sysctls, data planes."""
    from saru.setup import netinfo

    facts = Facts()
    for name, items in netinfo.addresses().items():
        for item in items:
            facts.local[str(item.ip)] = name
            facts.networks[str(item.ip)] = str(item)
    extra = (*PROBE_SOURCES, *PROBE_SOURCES6) if plan.nat else ()
    for address in {*plan.vips, *(r.address for r in plan.reals), *extra}:
        facts.routes[address] = netinfo.route_get(address)
    facts.default_interface = netinfo.default_interface(4)
    facts.sysctls = {key: sysctl.read(key) for key in sysctl_keys(plan, facts)}
    facts.ipvs = _ipvs()
    facts.nft = _nft()
    if plan.nat:
        facts.conntrack = _conntrack()
    return facts


class _Prober:
    """The active probes of one run, sharing the MACs learnt on the way."""

    def __init__(self, plan: Plan, facts: Facts, timeout: float) -> None:
        self.plan, self.facts, self.timeout = plan, facts, timeout
        self.macs: dict[str, str | None] = {}

    def mac_of(self, address: str) -> str | None:
        """The MAC of the next hop towards ``address`` (the host itself when on-link)."""
        from saru.setup import probe

        if address not in self.macs:
            route = self.facts.routes.get(address)
            try:
                self.macs[address] = (probe.resolve_mac(route.interface, route.gateway or address, self.timeout)
                                      if route else None)
            except probe.ProbeError:
                self.macs[address] = None
        return self.macs[address]

    def vip(self, vip: str) -> list[Item]:
        """Ownership of the VIP and, with DR reals, that none of them answers for it."""
        from saru.setup import probe

        family = ipaddress.ip_address(vip).version
        gate = [r for r in self.plan.reals_by("gate") if r.vip == vip and r.family == family]
        iface = vip_interface(self.plan, self.facts, vip)
        others: list[str] | None = None
        arp_item: Item | None = None
        if iface and iface != "lo":
            try:
                answers = tuple(a.mac for a in probe.arp_answers(iface, vip, self.timeout))
                onlink = [r for r in gate if (rt := self.facts.routes.get(r.address)) and not rt.gateway
                          and rt.kind != "local"]
                macs = {r.address: self.mac_of(r.address) for r in onlink}
                arp_item, others = judge_arp(ArpSeen(vip, iface, answers, macs), vip in self.facts.local,
                                             vip in self.plan.ha_vips)
            except probe.ProbeError as exc:
                arp_item = Item(arp_name(vip), "warn", f"not probed: {exc}")
        items = [check_vip(self.plan, self.facts, vip, others)]
        if gate and arp_item is not None:
            items.append(arp_item)
        return items

    def dr_real(self, real: RealRef) -> Item | None:
        """Does the real accept a packet for the VIP (a SYN to VIP:port in a frame for its MAC)?"""
        from saru.setup import probe

        route = self.facts.routes.get(real.address)
        if not real.vip or route is None or route.gateway or route.kind == "local":
            return None
        mac = self.mac_of(real.address)
        if mac is None:
            return Item(accepts_name(real), "fail", "it does not answer ARP / neighbour solicitations for its own "
                        "address: down, or not on this network", f"ping {real.address}")
        source = own_address(self.plan, self.facts, route, real.address)
        if source is None:
            return Item(accepts_name(real), "warn", f"not probed: this director has no address of its own on "
                        f"{route.interface} besides the VIPs")
        port = real.port if real.protocol == "tcp" and real.port else None
        try:
            reply = probe.exchange(route.interface, mac, source, real.vip, port, self.timeout)
        except probe.ProbeError as exc:
            return Item(accepts_name(real), "warn", f"not probed: {exc}")
        return judge_accepts(real, reply.kind if reply else None)

    def nat_real(self, real: RealRef) -> Item | None:
        """Do the real's replies to a client-like address come back through this director?"""
        from saru.setup import probe

        route = self.facts.routes.get(real.address)
        if route is None or route.kind == "local":
            return None
        name = f"NAT real {real.address} routes replies through this director"
        mac = self.mac_of(real.address)
        if mac is None:
            return Item(name, "fail", f"cannot reach it: no answer from {route.gateway or real.address} "
                        "to ARP / neighbour solicitation", f"ping {real.address}")
        source = probe_source(self.facts, real.family)
        own = own_address(self.plan, self.facts, route, real.address)
        port = real.port if real.protocol == "tcp" and real.port else None
        try:
            reply = probe.exchange(route.interface, mac, source, real.address, port, self.timeout)
            control = None
            if reply is None and own:
                back = probe.exchange(route.interface, mac, own, real.address, port, self.timeout)
                control = back.kind if back else None
        except probe.ProbeError as exc:
            return Item(name, "warn", f"not probed: {exc}")
        return judge_return_path(real, own, mac, reply.src_mac if reply else None, control, source)


def run(plan: Plan, probes: bool = True, timeout: float = 0.5,
        progress: Callable[[Item], None] | None = None) -> list[Item]:
    """Every check, in the guide's order; active probes unless ``probes`` is False."""
    facts = gather(plan)
    items: list[Item] = []

    def add(*new: Item | None) -> None:
        for item in new:
            if item is not None:
                items.append(item)
                if progress is not None:
                    progress(item)

    add(*check_forwarding(plan, facts))
    add(*check_redirects(plan, facts))
    add(*check_rp_filter(plan, facts))
    add(check_dataplane(plan, facts))
    add(*check_conntrack(plan, facts))
    add(*check_firewalld(plan, facts))
    prober = _Prober(plan, facts, timeout)
    for vip in plan.vips:
        add(*(prober.vip(vip) if probes else [check_vip(plan, facts, vip, None)]))
    for real in plan.reals_by("gate"):
        add(check_dr_onlink(facts, real))
        if probes:
            add(prober.dr_real(real))
    if probes:
        for real in plan.reals_by("masq"):
            add(prober.nat_real(real))
    return items
