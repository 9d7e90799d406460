"""Making the loopback VIPs survive a reboot: which network configuration system is in use, and the one
snippet Saru writes for it.

* ``ifupdown`` (Debian's ``/etc/network/interfaces``): ``/etc/network/interfaces.d/saru-realserver`` —
  one ``lo:saruN`` alias stanza per IPv4 VIP (the guide's ``lo:0`` with a /32), one ``iface lo inet6
  static`` stanza per IPv6 VIP. ``/etc/network/interfaces`` must ``source`` that directory (Debian's
  default file does; the check says so when it does not).
* ``networkd`` (systemd-networkd, also netplan's default renderer): ``/etc/systemd/network/
  10-saru-realserver-lo.network`` matching ``lo`` with one ``Address=`` per VIP.
* ``networkmanager``: ``/etc/NetworkManager/system-connections/saru-realserver-lo.nmconnection``, a
  ``type=loopback`` keyfile (NetworkManager >= 1.42), mode 0600 as NetworkManager requires.
* ``network-scripts`` (RHEL/CentOS initscripts, the guide's system): ``/etc/sysconfig/network-scripts/
  ifcfg-lo:saruN``, one alias per IPv4 VIP, exactly the guide's ``DEVICE``/``IPADDR``/``NETMASK=
  255.255.255.255``/``ONBOOT=yes`` (``ifup lo:saruN``). initscripts has no IPv6 alias: IPv6 VIPs are
  then not made persistent (the check says so).
* ``none``: nothing is written (the caller makes the addresses persistent some other way).

``detect(root)`` looks at files only (so it works on an image under ``--root``), in this order:
ifupdown when ``/etc/network/interfaces`` configures something, network-scripts when
``/etc/sysconfig/network-scripts/ifcfg-lo`` exists, then networkd when it is enabled or has
``.network`` files (or netplan renders for it), then NetworkManager when it is enabled or has connection
files. Pure apart from ``detect`` reading the directory tree.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SYSTEMS = ("ifupdown", "networkd", "networkmanager", "network-scripts", "none")
HEADER = ("saru realserver: the LVS direct-routing VIPs on the loopback, so the real server accepts packets\n"
          "sent to them without answering ARP for them. Written by `saru realserver apply`; removed by\n"
          "`saru realserver apply --undo`.")


@dataclass(frozen=True)
class Snippet:
    """A file to write: path (absolute, without --root), content and permission bits."""

    system: str
    path: str
    content: str
    mode: int = 0o644


def _comment(prefix: str = "# ") -> str:
    return "\n".join(f"{prefix}{line}" for line in HEADER.splitlines()) + "\n"


def _host(vip: str) -> str:
    address = ipaddress.ip_address(vip)
    return f"{address}/{address.max_prefixlen}"


def snippets(system: str, vips: Sequence[str]) -> list[Snippet]:
    """The file(s) making ``vips`` (bare addresses) persistent on ``lo`` with ``system`` (one, except
    network-scripts: one alias file per IPv4 VIP); empty for ``none``."""
    v4 = [v for v in vips if ipaddress.ip_address(v).version == 4]
    v6 = [v for v in vips if ipaddress.ip_address(v).version == 6]
    if system == "ifupdown":
        parts = [_comment()]
        for n, vip in enumerate(v4):
            parts.append(f"auto lo:saru{n}\niface lo:saru{n} inet static\n    address {_host(vip)}\n")
        for vip in v6:
            parts.append(f"iface lo inet6 static\n    address {_host(vip)}\n")
        return [Snippet(system, "/etc/network/interfaces.d/saru-realserver", "\n".join(parts))]
    if system == "networkd":
        lines = [_comment().rstrip("\n"), "[Match]", "Name=lo", "", "[Network]"]
        lines += [f"Address={_host(vip)}" for vip in vips]
        return [Snippet(system, "/etc/systemd/network/10-saru-realserver-lo.network", "\n".join(lines) + "\n")]
    if system == "networkmanager":
        lines = [_comment().rstrip("\n"), "[connection]", "id=saru-realserver-lo", "type=loopback",
                 "interface-name=lo", "autoconnect=true", ""]
        for family, addresses in (("ipv4", v4), ("ipv6", v6)):
            lines.append(f"[{family}]")
            if addresses:
                lines.append("method=manual")
                lines += [f"address{n}={_host(vip)}" for n, vip in enumerate(addresses, 1)]
            else:
                lines.append("method=ignore" if family == "ipv6" else "method=auto")
            lines.append("")
        return [Snippet(system, "/etc/NetworkManager/system-connections/saru-realserver-lo.nmconnection",
                        "\n".join(lines).rstrip("\n") + "\n", 0o600)]
    if system == "network-scripts":  # the guide's own ifcfg-lo:0 (DEVICE/IPADDR/NETMASK/ONBOOT)
        return [Snippet(system, f"/etc/sysconfig/network-scripts/ifcfg-lo:saru{n}",
                        _comment() + f"DEVICE=lo:saru{n}\nIPADDR={vip}\nNETMASK=255.255.255.255\n"
                        "ONBOOT=yes\nNAME=saru-realserver\n") for n, vip in enumerate(v4)]
    if system == "none":
        return []
    raise ValueError(f"unknown network configuration system {system!r} (choose from {', '.join(SYSTEMS)})")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _meaningful(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _any(directory: Path, pattern: str) -> bool:
    try:
        return any(directory.glob(pattern))
    except OSError:
        return False


def detect(root: Path) -> tuple[str, str]:
    """(system, why) for the tree under ``root`` (``/`` on a live system)."""
    etc = root / "etc"
    interfaces = etc / "network" / "interfaces"
    lines = _meaningful(_read(interfaces))
    if any(re.match(r"(iface|auto|source|source-directory|allow-)", line) for line in lines):
        return "ifupdown", "/etc/network/interfaces configures interfaces (ifupdown)"
    wants = etc / "systemd" / "system"
    if (etc / "sysconfig" / "network-scripts" / "ifcfg-lo").exists():
        return "network-scripts", "/etc/sysconfig/network-scripts/ifcfg-lo exists (initscripts)"
    netplan = sorted((etc / "netplan").glob("*.yaml")) if (etc / "netplan").is_dir() else []
    netplan_nm = any(re.search(r"renderer:\s*NetworkManager", _read(p)) for p in netplan)
    if netplan and not netplan_nm:
        return "networkd", "netplan renders for systemd-networkd"
    if (_any(wants, "*.wants/systemd-networkd.service") or _any(etc / "systemd" / "network", "*.network")):
        return "networkd", "systemd-networkd is enabled or configured (/etc/systemd/network)"
    if (netplan_nm or _any(wants, "*.wants/NetworkManager.service")
            or _any(etc / "NetworkManager" / "system-connections", "*")):
        return "networkmanager", "NetworkManager is enabled or configured"
    if interfaces.exists():
        return "ifupdown", "/etc/network/interfaces exists (ifupdown)"
    return "none", "no ifupdown, systemd-networkd or NetworkManager configuration found (use --netconf)"


def ifupdown_sources_snippets(root: Path) -> bool:
    """Whether /etc/network/interfaces includes /etc/network/interfaces.d (Debian's default does)."""
    for line in _meaningful(_read(root / "etc" / "network" / "interfaces")):
        if re.match(r"source(-directory)?\s+\S*interfaces\.d", line):
            return True
    return False
