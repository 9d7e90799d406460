"""A real OpenSMTPD for the tests: listens on 127.0.0.1, delivers ``@example.test`` to a maildir.

OpenSMTPD has compiled-in root paths (``/var/spool/smtpd``, ``/run/smtpd.sock``) and one instance per
machine. When ``unshare -m`` works (root in CI), each instance gets a private mount namespace in
which a directory of its own is bound over ``/run`` and over ``/var/spool/smtpd``, so instances
never collide and leave nothing behind; otherwise the system paths are used.

Delivery runs as ``nobody`` (smtpd refuses root), into a maildir under a private ``/tmp`` directory
``nobody`` may write; the recipients ``ops``, ``other`` and ``admin`` are aliases of ``nobody``.

Besides ``port`` (normal service) it listens on ``filtered[role]`` ports whose EHLO answer is forced by
smtpd's built-in filters (HELO is not filtered): ``refuse_ehlo`` 550, ``old_ehlo`` 502 (not
implemented), ``closing`` 421 and the connection closed.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import functools
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

from tests.helpers import free_port, require

DOMAIN = "example.test"
MAILBOXES = ("ops", "other", "admin")
DELIVERY_USER = "nobody"

#: filtered listeners: role -> what the filter does at the EHLO phase
EHLO_FILTERS = {
    "refuse_ehlo": 'reject "550 5.7.1 go away"',
    "old_ehlo": 'reject "502 5.5.1 EHLO not implemented"',
    "closing": 'disconnect "421 4.3.2 going down"',
}

SMTPD_CONF = """\
table aliases {{ {aliases} }}
table loopback {{ "{host}" }}
{filters}
listen on {host} port {port}
{listeners}
action "deliver" maildir "{maildir}" alias <aliases> user {user}
match from any for domain "{domain}" action "deliver"
"""

#: In a private mount namespace: its own /run and spool, and a resolv.conf that answers at once
#: (hosts file first, DNS on loopback where nothing listens) — the machine's resolver may be
#: unreachable, and smtpd's reverse lookup of each client would then stall the greeting.
ISOLATE = ('mkdir -p /var/spool/smtpd && printf "nameserver 127.0.0.1\\nlookup file bind\\n" > "$1/resolv.conf" '
           '&& mount --bind "$1/resolv.conf" /etc/resolv.conf '
           '&& mount --bind "$1" /run && mount --bind "$2" /var/spool/smtpd '
           '&& exec smtpd -d -f "$3"')


@functools.cache
def can_isolate() -> bool:
    """Whether ``unshare -m`` (a private mount namespace) is available."""
    if shutil.which("unshare") is None:
        return False
    result = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return result.returncode == 0


@dataclass
class OpenSmtpd:
    """A running smtpd; ``messages()`` reads what it delivered; ``stop()`` ends it (idempotent)."""

    directory: Path
    host: str = "127.0.0.1"
    port: int = 0
    mailroot: Path | None = None
    filtered: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def maildir(self) -> Path:
        assert self.mailroot is not None
        return self.mailroot / "Maildir"

    @property
    def log(self) -> Path:
        return self.directory / "smtpd.log"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        self.mailroot = Path(tempfile.mkdtemp(prefix="saru-smtpd-"))
        user = pwd.getpwnam(DELIVERY_USER)
        os.chmod(self.mailroot, 0o755)
        os.chown(self.mailroot, user.pw_uid, user.pw_gid)
        aliases = ", ".join(f'"{name}" = "{DELIVERY_USER}"' for name in MAILBOXES)
        for role in EHLO_FILTERS:
            port = free_port(self.host)
            while port == self.port or port in self.filtered.values():
                port = free_port(self.host)
            self.filtered[role] = port
        filters = "\n".join(f'filter "{role}" phase ehlo match src <loopback> {action}'
                            for role, action in EHLO_FILTERS.items())
        listeners = "\n".join(f'listen on {self.host} port {port} filter "{role}"'
                              for role, port in self.filtered.items())
        conf = self.directory / "smtpd.conf"
        conf.write_text(SMTPD_CONF.format(aliases=aliases, host=self.host, port=self.port, filters=filters,
                                          listeners=listeners, maildir=self.maildir, user=DELIVERY_USER,
                                          domain=DOMAIN))
        conf.chmod(0o644)
        if can_isolate():
            run, spool = self.directory / "run", self.directory / "spool"
            run.mkdir(exist_ok=True)
            spool.mkdir(exist_ok=True)
            spool.chmod(0o711)  # smtpd insists
            argv = ["unshare", "-m", "sh", "-c", ISOLATE, "sh", str(run), str(spool), str(conf)]
        else:
            argv = ["smtpd", "-d", "-f", str(conf)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"smtpd exited with {self.process.returncode}: {self.log_text()[-800:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                    if sock.recv(512).startswith(b"220"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"smtpd did not answer on {self.host}:{self.port}: {self.log_text()[-800:]}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        if self.mailroot is not None:
            shutil.rmtree(self.mailroot, ignore_errors=True)
            self.mailroot = None

    def messages(self) -> list[email.message.EmailMessage]:
        """Every delivered message, oldest first."""
        files: list[Path] = []
        for sub in ("new", "cur"):
            folder = self.maildir / sub
            if folder.is_dir():
                files += [f for f in folder.iterdir() if f.is_file()]
        files.sort(key=lambda f: (f.stat().st_mtime, f.name))
        return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
                for f in files]


def start_opensmtpd(directory: Path) -> OpenSmtpd:
    """Start OpenSMTPD on a free loopback port (it needs root and its Debian users)."""
    require(shutil.which("smtpd") is not None, "opensmtpd is not installed")
    require(os.geteuid() == 0, "OpenSMTPD must be started as root")
    server = OpenSmtpd(directory)
    server.start()
    return server
