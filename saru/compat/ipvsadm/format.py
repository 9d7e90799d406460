"""ipvsadm's text formats for a Saru table: ``-L -n`` listings (plain, ``--stats``, ``--rate``,
``--thresholds``, ``--persistent-conn``), ``-S`` rules, ``-L -n -c`` connection entries and
``-L --daemon`` sync daemons, printf for printf (ipvsadm 1.31).

Pure functions over ``Table``, ``ServiceStats``, ``ConnEntry`` and ``SyncDaemon``; ``saru ipvsadm``
prints them for whichever data plane runs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from saru.compat.ipvsadm.describe import describe_op
from saru.dataplane.base import ConnEntry, DestStats, ServiceStats
from saru.model import FORWARD_NAMES, AddDest, AddService, Dest, Service, ServiceKey, Table

if TYPE_CHECKING:  # the IPVS data plane's module; a type only, so formatting never imports the plane
    from saru.dataplane.ipvs import SyncDaemon

HEADER = "IP Virtual Server version 1.2.1 (size=4096)"
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17}

TITLES = {
    "plain": "Prot LocalAddress:Port Scheduler Flags\n"
             "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
    "stats": f"{'Prot LocalAddress:Port':<33} {'Conns':>8} {'InPkts':>8} {'OutPkts':>8} {'InBytes':>8} "
             f"{'OutBytes':>8}\n  -> RemoteAddress:Port",
    "rate": f"{'Prot LocalAddress:Port':<33} {'CPS':>8} {'InPPS':>8} {'OutPPS':>8} {'InBPS':>8} "
            f"{'OutBPS':>8}\n  -> RemoteAddress:Port",
    "thresholds": f"{'Prot LocalAddress:Port':<33} {'Uthreshold':<10} {'Lthreshold':<10} "
                  f"{'ActiveConn':<10} {'InActConn':<10}\n  -> RemoteAddress:Port",
    "persistent-conn": f"{'Prot LocalAddress:Port':<33} {'Weight':<9} {'PersistConn':<11} "
                       f"{'ActiveConn':<10} {'InActConn':<10}\n  -> RemoteAddress:Port",
}


def _addr_sort_key(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return (ip.version, int(ip))


def service_sort_key(key: ServiceKey) -> tuple[int, int, int, tuple[int, int], int]:
    """libipvs's order: non-fwmark first, then family, protocol, address, port."""
    if key.protocol == "fwm":
        return (key.fwmark or 0, key.family, 0, (0, 0), 0)
    return (0, key.family, PROTOCOL_NUMBERS[key.protocol], _addr_sort_key(key.address), key.port)


def dest_sort_key(dest: Dest) -> tuple[tuple[int, int], int]:
    return (_addr_sort_key(dest.address), dest.port)


def hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def largenum(value: int, exact: bool) -> str:
    """print_largenum: 9 columns, K/M/G/T suffixes unless --exact."""
    if exact:
        text = str(value)
        return text.rjust(9 if len(text) <= 8 else len(text) + 1)
    for limit, divisor, suffix in ((10**8, 1, ""), (10**9, 10**3, "K"), (10**11, 10**6, "M"),
                                   (10**14, 10**9, "G")):
        if value < limit:
            return f"{value // divisor:9d}" if not suffix else f"{value // divisor:8d}{suffix}"
    return f"{value // 10**12:8d}T"


def _service_name(key: ServiceKey, rule: bool) -> str:
    if key.protocol == "fwm":
        if rule:
            return f"-f {key.fwmark}" + (" -6" if key.family == 6 else "")
        return f"FWM  {key.fwmark}" + (" IPv6" if key.family == 6 else "")
    name = hostport(key.address, key.port)
    if rule:
        return f"{'-t' if key.protocol == 'tcp' else '-u'} {name}"
    text = f"{key.protocol.upper()}  {name}"
    return text if key.family == 6 else text[:33]


def _mask_text(service: Service) -> str | None:
    mask = service.settings.netmask
    if not mask:
        return None
    if service.key.family == 6:
        return None if mask.lstrip("/") == "128" else mask.lstrip("/")
    return None if mask == "255.255.255.255" else mask


def _dest_name(service: Service, dest: Dest) -> str:
    name = hostport(dest.address, dest.port)
    return name if service.key.family == 6 else name[:28]


def format_service(service: Service, stats: ServiceStats | None, mode: str, exact: bool) -> list[str]:
    """The lines of one service and its destinations in the given listing mode."""
    s = service.settings
    name = _service_name(service.key, rule=False)
    stats = stats or ServiceStats()
    if mode == "stats":
        line = f"{name:<33}" + "".join(largenum(v, exact) for v in
                                       (stats.connections, 0, 0, stats.bytes_in, stats.bytes_out))
    elif mode == "rate":
        line = f"{name:<33}" + "".join(largenum(0, exact) for _ in range(5))
    elif mode in ("thresholds", "persistent-conn"):
        line = f"{name} {s.scheduler}" + _service_flags(service)
    else:
        line = f"{name} {s.scheduler}" + _service_flags(service)
    lines = [line]
    for dest in sorted(service.dests.values(), key=dest_sort_key):
        d = stats.dests.get(dest.key, DestStats())
        dname = _dest_name(service, dest)
        if mode == "stats":
            lines.append(f"  -> {dname:<28}" + "".join(largenum(v, exact) for v in
                                                    (d.connections, 0, 0, d.bytes_in, d.bytes_out)))
        elif mode == "rate":
            lines.append(f"  -> {dname:<28} {0:8d} {0:8d} {0:8d}" + largenum(0, exact) + largenum(0, exact))
        elif mode == "thresholds":
            lines.append(f"  -> {dname:<28} {dest.upper_threshold:<10} {dest.lower_threshold:<10} "
                         f"{d.active_connections:<10} {d.inactive_connections:<10}")
        elif mode == "persistent-conn":
            lines.append(f"  -> {dname:<28} {dest.weight:<9} {0:<11} "
                         f"{d.active_connections:<10} {d.inactive_connections:<10}")
        else:
            lines.append(f"  -> {dname:<28} {FORWARD_NAMES[dest.forward]:<7} {dest.weight:<6} "
                         f"{d.active_connections:<10} {d.inactive_connections:<10}")
    return lines


def _service_flags(service: Service) -> str:
    s = service.settings
    text = ""
    if s.schedflags:
        text += f" ({s.schedflags})"
    if s.persistent is not None:
        text += f" persistent {s.persistent}"
        mask = _mask_text(service)
        if mask:
            text += f" mask {mask}"
    if s.ops:
        text += " ops"
    return text


def format_listing(table: Table, stats: Mapping[ServiceKey, ServiceStats], mode: str = "plain",
                   exact: bool = False, only: ServiceKey | None = None) -> str:
    """``ipvsadm -L -n`` (with ``--stats`` etc. as ``mode``); ``only`` lists one service without header."""
    lines = [] if only else [HEADER]
    lines.append(TITLES[mode])
    for key in sorted(table.services, key=service_sort_key):
        if only is not None and key != only:
            continue
        lines.extend(format_service(table.services[key], stats.get(key), mode, exact))
    return "\n".join(lines) + "\n"


def format_rules(table: Table) -> str:
    """``ipvsadm -S -n``: the table as ``-A``/``-a`` rules that ``-R`` reads back (like ipvsadm,
    without the ``-x``/``-y`` thresholds)."""
    lines = []
    for key in sorted(table.services, key=service_sort_key):
        service = table.services[key]
        settings = replace(service.settings, netmask=_mask_text(service))
        lines.append(describe_op(AddService(key, settings)))
        dests = sorted(service.dests.values(), key=dest_sort_key)
        lines.extend(describe_op(AddDest(key, dest), save_format=True) for dest in dests)
    return "".join(f"{line}\n" for line in lines)


def _conn_hostport(address: str, port: int) -> str:
    """addrport_to_anyname with -n: ``a.b.c.d:port`` or ``[v6]:port``."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def format_connections(entries: list[ConnEntry], persistent_conn: bool = False) -> str:
    """``ipvsadm -L -n -c`` (list_conn / print_conn): a header and one line per entry, in order.
    Saru's entries carry no persistence-engine data, so ``--persistent-conn`` only changes the
    header, as ipvsadm does for entries without it."""
    lines = ["IPVS connection entries"]
    if persistent_conn:
        lines.append(f"pro expire {'state':<11} {'source':<18} {'virtual':<18} {'destination':<18} "
                     f"{'pe name':<16} pe_data")
    else:
        lines.append(f"pro expire {'state':<11} {'source':<18} {'virtual':<18} destination")
    for e in entries:
        expires = max(0, int(e.expires))
        expire = f"{expires // 60:02d}:{expires % 60:02d}"
        lines.append(f"{e.protocol:<3} {expire:<6} {e.state:<11} {_conn_hostport(*e.client):<18} "
                     f"{_conn_hostport(*e.virtual):<18} {_conn_hostport(*e.dest)}")
    return "\n".join(lines) + "\n"


def format_daemons(daemons: list[SyncDaemon]) -> str:
    """``ipvsadm -L --daemon`` (list_daemon): one line per running sync daemon, master first."""
    lines = []
    for role in ("master", "backup"):
        for d in daemons:
            if d.role != role:
                continue
            text = f"{d.role} sync daemon (mcast={d.interface}, syncid={d.syncid}"
            if d.maxlen:
                text += f", maxlen={d.maxlen}"
            if d.mcast_group:
                text += f", group={d.mcast_group}"
            if d.port:
                text += f", port={d.port}"
            if d.ttl:
                text += f", ttl={d.ttl}"
            lines.append(text + ")")
    return "".join(f"{line}\n" for line in lines)
