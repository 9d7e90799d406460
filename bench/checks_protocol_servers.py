"""The protocols ``checks_protocols.py`` measures against ONE real server of their own, and their servers.

Each server is started with the project's own test launchers (``tests.servers.*``) on 127.0.0.1,
in a directory of the benchmark's, and is stopped by its handle's ``stop()``. A ``ServerProtocol``
names the server it needs, the port (role) of that server it checks, the virtual service's fields
and how many checks of one pass may be in flight at once (lower than 1,000 where the server cannot
sustain more, with the reason).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import free_port
from tests.servers import databases, directory, mail, misc

HOST = "127.0.0.1"
FTP_PASSWORD = "saru@test"
SIP_LOGIN = "ldirectord@director.test"
LDAP_HEALTH = f"/cn=health,{directory.LDAP_SUFFIX}"
#: the connection limit given to the database servers (their defaults: MariaDB 151, the launcher's PG 50)
DB_MAX_CONNECTIONS = 1100


@dataclass
class Running:
    """A started server: its ports by role and what stops it (every part, last started first)."""

    ports: dict[str, int]
    stoppers: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        while self.stoppers:
            stopper = self.stoppers.pop()
            try:
                stopper()
            except Exception as exc:  # keep stopping the other parts
                print(f"  warning: stopping a server failed: {exc}")


@dataclass(frozen=True)
class ServerProtocol:
    """One negotiate check measured against one server instance."""

    name: str
    key: tuple[str, str]  # (checktype, service) as registered
    server: str  # key of STARTERS
    role: str  # which port of the server the checks go to
    fields: dict[str, object]  # VirtualConfig fields; str values are formatted with the server's ports
    protocol: str = "tcp"
    concurrency: int = 1000
    why_lower: str = ""  # the reason when concurrency < 1000


def _start_dnsmasq(work: Path) -> Running:
    server = directory.start_dnsmasq(work / "dnsmasq")
    return Running({"dns": server.port}, [server.stop])


def _start_slapd(work: Path) -> Running:
    server = directory.start_slapd(work / "slapd")
    return Running({"ldap": server.port, "ldaps": server.extra_ports["ldaps"]}, [server.stop])


def _start_freeradius(work: Path) -> Running:
    server = directory.start_freeradius(work / "freeradius")
    return Running({"radius": server.port}, [server.stop])


def _with_max_connections(server: databases.Database, *argv: str) -> Running:
    """Restart the launcher's server with a higher connection limit (its handle restarts on the same port)."""
    running = Running({"db": server.port}, [server.close])
    server.stop()
    server.argv.extend(argv)
    server.start()
    return running


def _start_mariadb(work: Path) -> Running:
    server = databases.start_mariadb(work / "mariadb")
    try:
        return _with_max_connections(server, f"--max-connections={DB_MAX_CONNECTIONS}")
    except BaseException:
        server.close()
        raise


def _start_postgresql(work: Path) -> Running:
    server = databases.start_postgresql(work / "postgresql")
    try:  # a later -c wins over the launcher's max_connections=50
        return _with_max_connections(server, "-c", f"max_connections={DB_MAX_CONNECTIONS}")
    except BaseException:
        server.close()
        raise


def _start_dovecot(work: Path) -> Running:
    server = mail.start_dovecot(work / "dovecot")
    return Running(dict(server.ports), [server.stop])


def _start_opensmtpd(work: Path) -> Running:
    server = mail.start_opensmtpd(work / "smtpd")
    return Running(dict(server.ports), [server.stop])


def _start_leafnode(work: Path) -> Running:
    server = mail.start_leafnode(work / "leafnode")
    return Running(dict(server.ports), [server.stop])


def _start_vsftpd(work: Path) -> Running:
    files = {"check.html": "<p>ftp is up</p>\n"}
    server = misc.start_vsftpd(work / "vsftpd", files, passwords=(FTP_PASSWORD,))
    return Running({"ftp": server.port}, [server.stop])


def _start_sipp(work: Path) -> Running:
    server = misc.start_sipp(work / "sipp", transport="udp")
    return Running({"sip": server.port}, [server.stop])


def _start_tinyproxy(work: Path) -> Running:
    from checks_bench import NginxGroup

    origin = NginxGroup(work / "origin", [(HOST, free_port(HOST))])
    running = Running({"origin": origin.addresses[0][1]}, [origin.stop])
    try:
        origin.start()
        proxy = misc.start_tinyproxy(work / "tinyproxy")
        running.stoppers.append(proxy.stop)
        running.ports["proxy"] = proxy.port
    except BaseException:
        running.stop()
        raise
    return running


STARTERS: dict[str, Callable[[Path], Running]] = {
    "dnsmasq": _start_dnsmasq, "slapd": _start_slapd, "freeradius": _start_freeradius,
    "mariadb": _start_mariadb, "postgresql": _start_postgresql, "dovecot": _start_dovecot,
    "opensmtpd": _start_opensmtpd, "leafnode": _start_leafnode, "vsftpd": _start_vsftpd,
    "sipp": _start_sipp, "tinyproxy": _start_tinyproxy,
}

_SQL = {"login": databases.DB_USER, "passwd": databases.DB_PASSWORD, "database": databases.DB_NAME,
        "request": "/" + databases.QUERY_ONE_ROW}
_MAIL = {"login": mail.MAIL_USER, "passwd": mail.MAIL_PASSWORD}
#: Dovecot: one login process per connection, default process_limit 100 and listen backlog 100; at
#: 1,000 in flight most checks time out
_DOVECOT: dict[str, Any] = {"concurrency": 100, "why_lower": "Dovecot login process_limit and backlog 100"}
#: IMAP sessions logged in as one user from one address: Dovecot's mail_max_userip_connections is 10
_DOVECOT_IMAP: dict[str, Any] = {"concurrency": 10,
                                 "why_lower": "Dovecot mail_max_userip_connections 10 (one user, one IP)"}
#: OpenSMTPD listens with a backlog of 5: beyond that SYNs are dropped and retransmitted after 1 s
_SMTPD: dict[str, Any] = {"concurrency": 5, "why_lower": "OpenSMTPD's listen backlog is 5 (SYN drops beyond)"}

SERVER_PROTOCOLS = [
    ServerProtocol("dns", ("negotiate", "dns"), "dnsmasq", "dns",
                   {"request": f"/{directory.DNS_NAME}", "receive": re.escape(directory.DNS_ADDRESS)},
                   protocol="udp"),
    ServerProtocol("ftp", ("negotiate", "ftp"), "vsftpd", "ftp",
                   {"request": "/check.html", "receive": "ftp is up", "login": "anonymous",
                    "passwd": FTP_PASSWORD},
                   concurrency=1, why_lower="the launcher gives vsftpd ONE passive port: concurrent PASV fail"),
    ServerProtocol("http_proxy", ("negotiate", "http_proxy"), "tinyproxy", "proxy",
                   {"request": "/http://127.0.0.1:{origin}/check.html", "receive": "OK alive"},
                   concurrency=20, why_lower="the launcher's tinyproxy has MaxClients 20"),
    ServerProtocol("imap", ("negotiate", "imap"), "dovecot", "imap", _MAIL, **_DOVECOT_IMAP),
    ServerProtocol("imaps", ("negotiate", "imaps"), "dovecot", "imaps", _MAIL, **_DOVECOT_IMAP),
    ServerProtocol("ldap", ("negotiate", "ldap"), "slapd", "ldap", {"request": LDAP_HEALTH}),
    ServerProtocol("ldaps", ("negotiate", "ldaps"), "slapd", "ldaps", {"request": LDAP_HEALTH}),
    ServerProtocol("mysql", ("negotiate", "mysql"), "mariadb", "db", _SQL),
    ServerProtocol("nntp", ("negotiate", "nntp"), "leafnode", "nntp", {}, concurrency=5,
                   why_lower="socat's listen backlog is 5; one leafnode forked per connection"),
    ServerProtocol("pgsql", ("negotiate", "pgsql"), "postgresql", "db", _SQL),
    ServerProtocol("pop", ("negotiate", "pop"), "dovecot", "pop3", _MAIL, **_DOVECOT),
    ServerProtocol("pops", ("negotiate", "pops"), "dovecot", "pop3s", _MAIL, **_DOVECOT),
    ServerProtocol("radius", ("negotiate", "radius"), "freeradius", "radius",
                   {"login": directory.RADIUS_USER, "passwd": directory.RADIUS_PASSWORD,
                    "secret": directory.RADIUS_SECRET}, protocol="udp", concurrency=100,
                   why_lower="the launcher's FreeRADIUS -X answers ~140/s on one thread; more only retransmit"),
    ServerProtocol("sip", ("negotiate", "sip"), "sipp", "sip", {"login": SIP_LOGIN}, protocol="udp"),
    ServerProtocol("smtp", ("negotiate", "smtp"), "opensmtpd", "smtp", {}, **_SMTPD),
    ServerProtocol("submission", ("negotiate", "submission"), "opensmtpd", "submission", {}, **_SMTPD),
]


def virtual_fields(proto: ServerProtocol, ports: dict[str, int]) -> dict[str, object]:
    """The protocol's VirtualConfig fields with ``{role}`` placeholders replaced by the server's ports."""
    return {k: v.format(**ports) if isinstance(v, str) else v for k, v in proto.fields.items()}
