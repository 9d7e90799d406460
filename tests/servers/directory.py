"""Real directory-style servers for the tests: slapd (LDAP/LDAPS), FreeRADIUS 3 and dnsmasq.

Each launcher writes its own configuration and data under a directory the test owns, binds to
loopback only, waits until the server is really serving (a TCP port opening, or a line in its log)
and returns a handle whose ``stop()`` ends it (idempotent, safe in ``finally`` blocks).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import free_port, make_self_signed_cert, require, wait_for_port

LDAP_SUFFIX = "dc=example,dc=test"
LDAP_ROOTDN = f"cn=admin,{LDAP_SUFFIX}"
LDAP_ROOTPW = "s3cret-admin"
LDAP_SCHEMAS = ("core", "cosine", "inetorgperson")

RADIUS_SECRET = "testing123-saru"
RADIUS_USER = "saru-check"
RADIUS_PASSWORD = "p4ss-w0rd"

DNS_NAME = "www.example.test"
DNS_ADDRESS = "192.0.2.10"
DNS_PTR_NAME = "rev.example.test"
#: a name with so many A records that the UDP answer is truncated (the client must retry over TCP)
DNS_BIG_NAME = "big.example.test"
DNS_BIG_COUNT = 60


@dataclass
class Server:
    """A running server process; ``stop()`` terminates it and waits (kill after 5 s)."""

    name: str
    host: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    extra_ports: dict[str, int] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}.log"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def launch(self, argv: list[str]) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def log_shows(self, text: str, timeout: float = 5.0) -> bool:
        """Whether ``text`` shows in the log within ``timeout`` (polled; False at once if it died)."""
        deadline = time.monotonic() + timeout
        while True:
            if text in self.log_text():
                return True
            if time.monotonic() >= deadline or self.process is None or self.process.poll() is not None:
                return False
            time.sleep(0.02)

    def wait_log(self, text: str, timeout: float = 15.0) -> None:
        """Wait until the log shows ``text``; stop the server and raise if it does not."""
        if not self.log_shows(text, timeout):
            self.stop()
            raise RuntimeError(f"{self.name} did not become ready:\n{self.log_text()[-3000:]}")

    def wait_port(self, port: int, timeout: float = 15.0) -> None:
        try:
            wait_for_port(self.host, port, timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{self.name} did not open port {port}:\n{self.log_text()[-3000:]}") from None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def ipv6_loopback() -> bool:
    """Whether ::1 can be bound here."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def _need(*commands: str) -> None:
    for command in commands:
        require(shutil.which(command) is not None or Path(f"/usr/sbin/{command}").exists(),
                f"{command} is not installed")


def _which(command: str) -> str:
    return shutil.which(command) or f"/usr/sbin/{command}"


# --------------------------------------------------------------------------------------------------
# slapd
# --------------------------------------------------------------------------------------------------

SLAPD_CONF = """\
{schemas}
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
maxsize 16777216
suffix "{suffix}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {dir}/db
access to * by * read
"""

LDAP_ENTRIES = """\
dn: {suffix}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{suffix}
objectClass: organizationalUnit
ou: people

dn: uid=alice,ou=people,{suffix}
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: Liddell
userPassword: {alice_pw}

dn: cn=health,{suffix}
objectClass: organizationalRole
cn: health
"""

LDAP_ALICE_PASSWORD = "alice-pw"


def start_slapd(directory: Path, ipv6: bool = False) -> Server:
    """slapd with an mdb database (suffix dc=example,dc=test) on LDAP and LDAPS ports of 127.0.0.1.

    The root DN :data:`LDAP_ROOTDN` binds with :data:`LDAP_ROOTPW`; anyone may read. ``port`` is
    plain LDAP; ``extra_ports["ldaps"]`` is LDAPS (self-signed certificate) and, with ``ipv6``,
    ``extra_ports["ldap6"]`` is plain LDAP on ::1.
    """
    _need("slapd", "slapadd")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "db").mkdir(exist_ok=True)
    cert, key = make_self_signed_cert(directory, ("localhost",))
    schemas = "\n".join(f"include /etc/ldap/schema/{name}.schema" for name in LDAP_SCHEMAS)
    conf = directory / "slapd.conf"
    conf.write_text(SLAPD_CONF.format(schemas=schemas, dir=directory, cert=cert, key=key, suffix=LDAP_SUFFIX,
                                      rootdn=LDAP_ROOTDN, rootpw=LDAP_ROOTPW))
    ldif = directory / "entries.ldif"
    ldif.write_text(LDAP_ENTRIES.format(suffix=LDAP_SUFFIX, alice_pw=LDAP_ALICE_PASSWORD))
    subprocess.run([_which("slapadd"), "-f", str(conf), "-l", str(ldif)], check=True, capture_output=True)
    port, tls_port = free_port(), free_port()
    urls = [f"ldap://127.0.0.1:{port}/", f"ldaps://127.0.0.1:{tls_port}/"]
    extra = {"ldaps": tls_port}
    if ipv6:
        port6 = free_port("::1")
        urls.append(f"ldap://[::1]:{port6}/")
        extra["ldap6"] = port6
    server = Server("slapd", "127.0.0.1", port, directory, extra_ports=extra)
    server.launch([_which("slapd"), "-d", "0", "-h", " ".join(urls), "-f", str(conf)])
    server.wait_port(port)
    server.wait_port(tls_port)
    return server


# --------------------------------------------------------------------------------------------------
# FreeRADIUS 3
# --------------------------------------------------------------------------------------------------

RADIUSD_CONF = """\
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {dir}/log
raddbdir = {dir}/raddb
radacctdir = {dir}/radacct
name = freeradius
confdir = ${{raddbdir}}
modconfdir = ${{confdir}}/mods-config
certdir = ${{confdir}}/certs
cadir = ${{confdir}}/certs
run_dir = {dir}/run
db_dir = {dir}
libdir = /usr/lib/freeradius
pidfile = ${{run_dir}}/${{name}}.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {{
    destination = stdout
    colourise = no
    auth = no
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = {reject_delay}
    status_server = yes
}}
thread pool {{
    start_servers = 1
    max_servers = 4
    min_spare_servers = 1
    max_spare_servers = 3
    max_requests_per_server = 0
}}
modules {{
    pap {{
    }}
    files {{
        filename = ${{confdir}}/users
        acctusersfile = ${{confdir}}/users
        preproxy_usersfile = ${{confdir}}/users
    }}
}}
client localhost {{
    ipaddr = 127.0.0.1
    secret = {secret}
}}
client localhost6 {{
    ipv6addr = ::1
    secret = {secret}
}}
server saru {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {port}
    }}
{listen6}    authorize {{
        files
        pap
    }}
    authenticate {{
        Auth-Type PAP {{
            pap
        }}
    }}
}}
"""

RADIUSD_LISTEN6 = """\
    listen {{
        type = auth
        ipv6addr = ::1
        port = {port}
    }}
"""


def start_freeradius(directory: Path, ipv6: bool = False, reject_delay: int = 0) -> Server:
    """FreeRADIUS 3 on a free UDP port of 127.0.0.1 (and ::1 when ``ipv6``), PAP users from a file.

    One client (127.0.0.1 / ::1) with :data:`RADIUS_SECRET`; one user :data:`RADIUS_USER` with the
    Cleartext-Password :data:`RADIUS_PASSWORD`. ``reject_delay`` 0 makes Access-Reject immediate.
    """
    _need("freeradius")
    raddb = directory / "raddb"
    for sub in ("raddb", "log", "run", "radacct"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy("/etc/freeradius/3.0/dictionary", raddb / "dictionary")
    (raddb / "users").write_text(f'{RADIUS_USER} Cleartext-Password := "{RADIUS_PASSWORD}"\n')
    port = free_port("127.0.0.1", socket.SOCK_DGRAM)
    listen6 = RADIUSD_LISTEN6.format(port=port) if ipv6 else ""
    (raddb / "radiusd.conf").write_text(RADIUSD_CONF.format(
        dir=directory, secret=RADIUS_SECRET, port=port, listen6=listen6, reject_delay=reject_delay))
    server = Server("freeradius", "127.0.0.1", port, directory)
    server.launch([_which("freeradius"), "-f", "-X", "-d", str(raddb)])
    server.wait_log("Ready to process requests")
    return server


# --------------------------------------------------------------------------------------------------
# dnsmasq
# --------------------------------------------------------------------------------------------------


def reverse_name(address: str) -> str:
    """``10.2.0.192.in-addr.arpa`` for 192.0.2.10."""
    return ".".join(reversed(address.split("."))) + ".in-addr.arpa"


def start_dnsmasq(directory: Path, host: str = "127.0.0.1") -> Server:
    """dnsmasq answering A ``www.example.test`` → 192.0.2.10 and PTR 192.0.2.20 → rev.example.test.

    ``big.example.test`` has 60 A records (198.51.100.1-60): too many for a 512-byte UDP answer.

    It serves UDP and TCP on the same port of ``host`` and forwards nothing (``--no-resolv``).
    """
    _need("dnsmasq")
    directory.mkdir(parents=True, exist_ok=True)
    port = _port_free_for_both(host)
    argv = [
        _which("dnsmasq"), "--no-daemon", "--conf-file=/dev/null", f"--port={port}",
        f"--listen-address={host}", "--bind-interfaces", "--no-resolv", "--no-hosts", "--pid-file=",
        f"--address=/{DNS_NAME}/{DNS_ADDRESS}", f"--ptr-record={reverse_name('192.0.2.20')},{DNS_PTR_NAME}",
        "--log-facility=-",
        *(f"--host-record={DNS_BIG_NAME},198.51.100.{i}" for i in range(1, DNS_BIG_COUNT + 1)),
    ]
    if os.geteuid() == 0:
        argv.append("--user=root")
    server = Server("dnsmasq", host, port, directory)
    server.launch(argv)
    server.wait_port(port)
    return server


def _port_free_for_both(host: str) -> int:
    """A port free for TCP and UDP on host."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        port = free_port(host)
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free for both TCP and UDP")


class SilentUdp:
    """A UDP socket bound on loopback that receives datagrams and never answers."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host = host
        self.port: int = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()
