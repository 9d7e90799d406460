"""Real mail and news servers for the checks' tests: OpenSMTPD, Dovecot (POP3/IMAP + TLS), leafnode.

Each launcher writes its own configuration under a directory the test owns, listens on 127.0.0.1
only (free ports), waits until the server really answers and returns a ``MailServer`` whose
``stop()`` ends the whole process group (idempotent, safe in ``finally`` blocks).

* **OpenSMTPD** (``smtpd -d``): ports ``smtp`` and ``submission`` serve normally; ``closed`` answers
  the connection with ``554``, ``refuse-ehlo`` rejects EHLO with ``550`` and ``old-ehlo`` with ``502``
  (HELO then works), all through smtpd's built-in filters. Its compiled-in paths are private per
  instance through ``unshare -m`` (see ``tests.servers.smtp``).
* **Dovecot** (``dovecot -F -c``): ports ``pop3``, ``pop3s``, ``imap``, ``imaps``; a passwd-file with
  ``MAIL_USER``/``MAIL_PASSWORD`` (and two users whose passwords hold quotes, backslashes,
  spaces and non-ASCII, for the IMAP quoting), a self-signed certificate, failed logins answered
  within about 0.5 s (no growing per-IP penalty: anvil's penalty socket is closed to the auth process).
  Its runtime directory (sockets, maildirs) is a short ``/tmp`` directory of its own: Unix socket paths
  are limited to 108 bytes and the mail user ``nobody`` must reach the maildirs.
* **leafnode** (an inetd-style NNTP server): ``socat TCP-LISTEN:…,fork EXEC:leafnode,nofork`` inside a
  private mount namespace in which the test's own config and spool are bound over leafnode's
  compiled-in ``/etc/news/leafnode`` and ``/var/spool/news``. ``nofork`` gives leafnode the TCP socket
  itself (through a socketpair it would refuse the "non-local" peer). ``fqdn=False`` leaves leafnode
  without a usable host name, so that it greets with ``503`` (a real not-ready answer).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import free_port, make_self_signed_cert, require
from tests.servers.smtp import ISOLATE, can_isolate

HOST = "127.0.0.1"
MAIL_USER = "saru"
MAIL_PASSWORD = "s3cret-p4ss"
#: IMAP: a password sent as a literal (non-ASCII). Dovecot's passwd-file finds no user whose name
#: holds a quote, so the escapes are exercised through the passwords.
MAIL_ODD_USER = "odd"
MAIL_ODD_PASSWORD = 'pä "ss" \\wörd'
#: IMAP: a password sent as a quoted string with escaped backslashes and quotes
MAIL_QUOTED_USER = "quoted"
MAIL_QUOTED_PASSWORD = 'b\\ck"sl\\sh "q"'
MAIL_UID_USER = "nobody"

NNTP_FQDN = "news.saru-tests.net"  # leafnode refuses reserved names such as *.example.test


@dataclass
class MailServer:
    """A running server process (group); ``ports`` by role; ``stop()`` ends it and cleans up."""

    name: str
    directory: Path
    ports: dict[str, int]
    host: str = HOST
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    scratch: Path | None = None  # a private /tmp directory removed by stop()
    term_grace: float = 5.0  # how long stop() lets the server end itself after SIGTERM

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}.out"

    def log_text(self) -> str:
        logs = [self.log, *(self.scratch.glob("*.log") if self.scratch else ())]
        return "\n".join(p.read_text(errors="replace") for p in logs if p.exists())

    def launch(self, argv: list[str]) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, greeting: bytes = b"", timeout: float = 15.0) -> None:
        """Wait until every port accepts connections (and, if given, the first greets with
        ``greeting``); stop and raise if the server dies or does not get there in time."""
        try:
            for role, port in self.ports.items():
                self._wait_port(port, greeting if role == next(iter(self.ports)) else b"", timeout)
        except BaseException:
            log = self.log_text()[-3000:]
            self.stop()
            raise RuntimeError(f"{self.name} did not become ready:\n{log}") from None

    def _wait_port(self, port: int, greeting: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"exited with {self.process.returncode}")
            try:
                with socket.create_connection((self.host, port), timeout=1) as sock:
                    if not greeting or sock.recv(512).startswith(greeting):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"port {port} not ready within {timeout}s")

    def stop(self) -> None:
        """SIGTERM the server's main process (it ends its workers), SIGKILL whatever is left."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(self.term_grace)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            try:  # stragglers of the group (leafnode children of socat, dovecot workers)
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


def _need(command: str) -> str:
    path = shutil.which(command) or f"/usr/sbin/{command}"
    require(Path(path).exists(), f"{command} is not installed")
    return path


def _ports(*roles: str) -> dict[str, int]:
    ports: dict[str, int] = {}
    for role in roles:
        port = free_port(HOST)
        while port in ports.values():
            port = free_port(HOST)
        ports[role] = port
    return ports


# --------------------------------------------------------------------------------------------------
# OpenSMTPD
# --------------------------------------------------------------------------------------------------

SMTPD_CONF = """\
table loopback {{ "{host}" }}
filter "closed" phase connect match src <loopback> disconnect "554 5.3.2 no service here"
filter "refuse-ehlo" phase ehlo match src <loopback> reject "550 5.7.1 go away"
filter "old-ehlo" phase ehlo match src <loopback> reject "502 5.5.1 EHLO not implemented"
listen on {host} port {smtp}
listen on {host} port {submission}
listen on {host} port {closed} filter "closed"
listen on {host} port {refuse_ehlo} filter "refuse-ehlo"
listen on {host} port {old_ehlo} filter "old-ehlo"
match from any for any reject
"""


def start_opensmtpd(directory: Path) -> MailServer:
    """OpenSMTPD with the listeners described in the module docstring (needs root)."""
    smtpd = _need("smtpd")
    require(os.geteuid() == 0, "OpenSMTPD must be started as root")
    directory.mkdir(parents=True, exist_ok=True)
    ports = _ports("smtp", "submission", "closed", "refuse_ehlo", "old_ehlo")
    conf = directory / "smtpd.conf"
    conf.write_text(SMTPD_CONF.format(host=HOST, **ports))
    conf.chmod(0o644)
    server = MailServer("smtpd", directory, ports)
    if can_isolate():
        run, spool = directory / "run", directory / "spool"
        run.mkdir(exist_ok=True)
        spool.mkdir(exist_ok=True)
        spool.chmod(0o711)  # smtpd insists
        server.launch(["unshare", "-m", "sh", "-c", ISOLATE, "sh", str(run), str(spool), str(conf)])
    else:
        server.launch([smtpd, "-d", "-f", str(conf)])
    server.wait_ready(greeting=b"220")
    return server


# --------------------------------------------------------------------------------------------------
# Dovecot
# --------------------------------------------------------------------------------------------------

DOVECOT_CONF = """\
protocols = imap pop3
listen = {host}
base_dir = {run}/base
state_dir = {run}/state
instance_name = saru-{tag}
log_path = {run}/dovecot.log
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_failure_delay = 0
auth_mechanisms = plain
auth_verbose = yes
auth_username_chars =
mail_location = maildir:{run}/mail/%n
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={run}/mail/%n
}}
# no growing per-IP penalty after failed logins (the tests fail logins on purpose, all from loopback):
# the auth process cannot reach anvil's penalty socket, so it disables the penalty
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
"""


def start_dovecot(directory: Path) -> MailServer:
    """Dovecot with POP3, POP3S, IMAP and IMAPS on free loopback ports (needs root)."""
    dovecot = _need("dovecot")
    require(os.geteuid() == 0, "Dovecot must be started as root")
    directory.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="saru-dc-"))
    run.chmod(0o755)
    mail = run / "mail"
    for sub in ("base", "state", "mail"):
        (run / sub).mkdir()
    user = pwd.getpwnam(MAIL_UID_USER)
    os.chown(mail, user.pw_uid, user.pw_gid)
    cert, key = make_self_signed_cert(directory)
    passwd = run / "passwd"  # the auth process (user dovecot) reads it: not under the 0700 tmp_path
    # passwd-file: user:password:uid:gid:gecos:home:shell:extra — ":" cannot occur in the values
    passwd.write_text("".join(f"{name}:{secret}::::::\n" for name, secret in (
        (MAIL_USER, MAIL_PASSWORD), (MAIL_ODD_USER, MAIL_ODD_PASSWORD),
        (MAIL_QUOTED_USER, MAIL_QUOTED_PASSWORD))), encoding="utf-8")
    ports = _ports("pop3", "pop3s", "imap", "imaps")
    conf = directory / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(host=HOST, run=run, tag=run.name, cert=cert, key=key,
                                        passwd=passwd, uid=user.pw_uid, gid=user.pw_gid, **ports))
    # term_grace 0: on SIGTERM the master waits up to 6 s for login processes that ignore it here
    server = MailServer("dovecot", directory, ports, scratch=run, term_grace=0)
    server.launch([dovecot, "-F", "-c", str(conf)])
    server.wait_ready(greeting=b"+OK")
    return server


# --------------------------------------------------------------------------------------------------
# leafnode
# --------------------------------------------------------------------------------------------------

#: $1 config dir, $2 spool, then the socat command line
LEAFNODE_ISOLATE = ('mount --bind "$1" /etc/news/leafnode && mount --bind "$2" /var/spool/news '
                    '&& shift 2 && exec "$@"')


def start_leafnode(directory: Path, fqdn: bool = True, host: str = HOST) -> MailServer:
    """leafnode behind socat on a free port of ``host`` (127.0.0.1 or ::1; needs root, ``unshare -m``)."""
    leafnode = _need("leafnode")
    socat = _need("socat")
    require(os.geteuid() == 0, "leafnode's private paths need root (mount namespace)")
    require(can_isolate(), "leafnode's compiled-in paths need unshare -m")
    require(Path("/etc/news/leafnode").is_dir() and Path("/var/spool/news").is_dir(),
            "leafnode's directories are missing")
    news = pwd.getpwnam("news")
    etc, spool = directory / "etc", directory / "spool"
    etc.mkdir(parents=True, exist_ok=True)
    spool.mkdir(exist_ok=True)
    hostname = NNTP_FQDN if fqdn else "localhost.localdomain"
    config = etc / "config"
    config.write_text(f"server = news.invalid\nexpire = 20\nhostname = {hostname}\n")
    os.chown(config, 0, news.pw_gid)
    config.chmod(0o640)
    etc.chmod(0o755)
    os.chown(spool, news.pw_uid, news.pw_gid)
    ports = {"nntp": free_port(host)}
    server = MailServer("leafnode", directory, ports, host=host)
    listen = (f"TCP6-LISTEN:{ports['nntp']},bind=[{host}]" if ":" in host
              else f"TCP-LISTEN:{ports['nntp']},bind={host}") + ",reuseaddr,fork"
    server.launch(["unshare", "-m", "sh", "-c", LEAFNODE_ISOLATE, "sh", str(etc), str(spool),
                   socat, listen, f"EXEC:{leafnode},nofork"])
    server.wait_ready(greeting=b"200" if fqdn else b"503")
    return server
