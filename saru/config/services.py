"""ldirectord's service vocabulary: the 21 service names and their default ports, both directions.

Used by the parser (service chosen from the virtual's port) and by the checks (port to check when a
real has port 0, e.g. in a firewall-mark virtual).
"""

from __future__ import annotations

#: service name → default port (ldirectord.in l.1892-1917); ``none``/``simpletcp`` have none.
SERVICE_PORTS: dict[str, int] = {
    "ftp": 21,
    "smtp": 25,
    "dns": 53,
    "http": 80,
    "pop": 110,
    "nntp": 119,
    "imap": 143,
    "ldap": 389,
    "https": 443,
    "submission": 587,
    "ldaps": 636,
    "imaps": 993,
    "pops": 995,
    "oracle": 1521,
    "radius": 1812,
    "http_proxy": 3128,
    "mysql": 3306,
    "sip": 5060,
    "pgsql": 5432,
}

#: port → service name (ldirectord.in l.1860-1885); any other port gives ``none``.
PORT_SERVICES: dict[int, str] = {port: name for name, port in SERVICE_PORTS.items()}

#: every value ``service=`` accepts (exactly 21, l.1542-1578).
SERVICES: frozenset[str] = frozenset({*SERVICE_PORTS, "none", "simpletcp"})

#: checktypes accepted besides a bare integer N ("combined").
CHECKTYPES: frozenset[str] = frozenset(
    {"connect", "negotiate", "off", "on", "ping", "external", "external-perl"}
)


def service_for_port(port: int) -> str:
    """The service ldirectord assumes for a virtual on this port."""
    return PORT_SERVICES.get(port, "none")


def default_port(service: str) -> int:
    """The port checked for a real with port 0; 0 when the service has no default."""
    return SERVICE_PORTS.get(service, 0)
