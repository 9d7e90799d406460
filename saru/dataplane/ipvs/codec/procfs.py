"""The IPVS connection table as the kernel prints it in /proc/net/ip_vs_conn (what ``ipvsadm -L -c``
reads), parsed into ``ConnEntry`` (pure)."""

from __future__ import annotations

import ipaddress

from saru.dataplane.base import ConnEntry

__all__ = ["parse_conn_line", "parse_conn_table"]


def _conn_address(text: str) -> str:
    """An address of /proc/net/ip_vs_conn: 8 hex digits (IPv4, host order) or IPv6 with colons."""
    if ":" in text:
        return str(ipaddress.IPv6Address(text))
    return str(ipaddress.IPv4Address(int(text, 16)))


def parse_conn_line(line: str) -> ConnEntry | None:
    """One line of /proc/net/ip_vs_conn (``Pro FromIP FPrt ToIP TPrt DestIP DPrt State Expires
    [PEName PEData]``); None for the header or a line that is not an entry."""
    fields = line.split()
    if len(fields) < 9 or fields[0] == "Pro":
        return None
    try:
        return ConnEntry(
            protocol=fields[0],
            client=(_conn_address(fields[1]), int(fields[2], 16)),
            virtual=(_conn_address(fields[3]), int(fields[4], 16)),
            dest=(_conn_address(fields[5]), int(fields[6], 16)),
            state=fields[7],
            expires=float(int(fields[8])),
        )
    except ValueError:
        return None


def parse_conn_table(text: str) -> list[ConnEntry]:
    """Every entry of /proc/net/ip_vs_conn, in the kernel's order."""
    return [entry for entry in map(parse_conn_line, text.splitlines()) if entry is not None]
