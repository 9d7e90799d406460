"""Real servers for the ftp, sip, simpletcp and http_proxy checks, each on loopback with its own files.

* ``start_vsftpd``: vsftpd serving ``files`` to anonymous users (as root: it chroots and drops to the
  ``ftp`` user); anonymous passwords are restricted to ``passwords`` (``secure_email_list``), so a
  wrong password is a real login failure.
* ``start_sipp``: a SIPp UAS answering every OPTIONS with ``status`` (UDP, or TCP ``-t t1``).
* ``start_tinyproxy``: tinyproxy in the foreground (``-d``), allowing 127.0.0.1 only.
* ``start_line_server``: socat running a small line protocol for each connection (TCP) or datagram
  (UDP): ``PING`` → ``+PONG``, ``ECHO x`` → ``x``, anything else → ``-ERR``.

Every server runs in its own process group; ``stop()`` ends the group (idempotent).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import free_port, require, wait_for_port


@dataclass
class Server:
    """A server process on host:port; ``stop()`` ends its process group."""

    name: str
    host: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def read(self, name: str) -> str:
        """The text of a file in the server's directory ("" if absent)."""
        path = self.directory / name
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass


def _spawn(name: str, argv: Sequence[str], directory: Path, host: str, port: int) -> Server:
    """Start argv in a new session with output to <directory>/<name>.out."""
    out = open(directory / f"{name}.out", "wb")
    with out:
        process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=directory, start_new_session=True)
    return Server(name, host, port, directory, process)


def _started(server: Server, udp: bool = False) -> Server:
    """Wait until the server listens (TCP connect, or its UDP port bound); stop it on failure."""
    try:
        if udp:
            wait_for_udp(server.port)
        else:
            wait_for_port(server.host, server.port)
        if server.process is not None and server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited")
    except (TimeoutError, RuntimeError) as exc:
        server.stop()
        output = (server.directory / f"{server.name}.out").read_text(errors="replace")
        raise RuntimeError(f"{server.name} did not start: {exc}\n{output[-2000:]}") from None
    return server


def udp_bound(port: int) -> bool:
    """Whether some socket is bound to UDP port ``port`` (IPv4 or IPv6), read from /proc/net."""
    wanted = f"{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(line.split()[1].rsplit(":", 1)[1] == wanted for line in lines):
            return True
    return False


def wait_for_udp(port: int, timeout: float = 10.0) -> None:
    """Poll /proc/net/udp until ``port`` is bound (we must not bind it ourselves to find out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if udp_bound(port):
            return
        time.sleep(0.02)
    raise TimeoutError(f"UDP port {port} was not bound within {timeout}s")


# --------------------------------------------------------------------------------------------------
# vsftpd
# --------------------------------------------------------------------------------------------------

VSFTPD_CONF = """\
{listen}
listen_port={port}
background=NO
anonymous_enable=YES
local_enable=NO
write_enable=NO
anon_root={root}
ftp_username=ftp
nopriv_user=nobody
secure_email_list_enable=YES
email_password_file={passwords}
pasv_enable=YES
pasv_min_port={pasv_min}
pasv_max_port={pasv_max}
connect_from_port_20=NO
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
secure_chroot_dir={empty}
xferlog_enable=NO
vsftpd_log_file={directory}/vsftpd.log
"""


def _vsftpd_listen(host: str, pasv_address: str | None) -> str:
    if ":" in host:
        return f"listen=NO\nlisten_ipv6=YES\nlisten_address6={host}"
    return f"listen=YES\nlisten_ipv6=NO\nlisten_address={host}\npasv_address={pasv_address or host}"


def start_vsftpd(directory: Path, files: Mapping[str, str], passwords: Sequence[str] = ("saru@test",),
                 host: str = "127.0.0.1", pasv_address: str | None = None) -> Server:
    """vsftpd serving ``files`` (path → content) to anonymous users with one of ``passwords``.

    ``pasv_address``: the address its PASV replies name (as behind NAT); the data port still listens
    on ``host``.
    """
    require(shutil.which("vsftpd") is not None, "vsftpd is not installed")
    require(os.geteuid() == 0, "vsftpd's anonymous chroot needs root")
    directory.mkdir(parents=True, exist_ok=True)
    root, empty = directory / "root", directory / "empty"
    root.mkdir(mode=0o755, exist_ok=True)
    empty.mkdir(mode=0o755, exist_ok=True)
    root.chmod(0o755)  # not writable by the ftp user (vsftpd refuses a writable chroot)
    for path, content in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(0o644)
    (directory / "passwords").write_text("".join(f"{p}\n" for p in passwords))
    port = free_port(host)
    pasv_min = free_port(host)
    conf = directory / "vsftpd.conf"
    conf.write_text(VSFTPD_CONF.format(host=host, port=port, root=root, passwords=directory / "passwords",
                                       pasv_min=pasv_min, pasv_max=pasv_min, empty=empty, directory=directory,
                                       listen=_vsftpd_listen(host, pasv_address)))
    return _started(_spawn("vsftpd", ["vsftpd", str(conf)], directory, host, port))


# --------------------------------------------------------------------------------------------------
# SIPp
# --------------------------------------------------------------------------------------------------

SIPP_UAS = """\
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="OPTIONS responder {status}">
  <recv request="OPTIONS" crlf="true"/>
  <send>
    <![CDATA[
      SIP/2.0 {status} {reason}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Allow: INVITE, ACK, CANCEL, OPTIONS, BYE
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


def start_sipp(directory: Path, status: int = 200, reason: str = "OK", transport: str = "udp",
               host: str = "127.0.0.1") -> Server:
    """A SIPp UAS answering each OPTIONS with ``status reason`` over ``transport`` (udp|tcp)."""
    require(shutil.which("sipp") is not None, "sipp (Debian package sip-tester) is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    scenario = directory / "uas.xml"
    scenario.write_text(SIPP_UAS.format(status=status, reason=reason))
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    port = free_port(host, kind)
    control = "127.0.0.1" if ":" in host else host
    argv = ["sipp", "-sf", str(scenario), "-i", host, "-p", str(port), "-nostdin",
            "-t", "t1" if transport == "tcp" else "u1",
            # the control socket is IPv4-only in SIPp: keep it on 127.0.0.1 for an IPv6 UAS
            "-ci", control, "-cp", str(free_port(control, socket.SOCK_DGRAM)),
            "-mi", host, "-mp", str(free_port(host, socket.SOCK_DGRAM)),
            "-trace_msg", "-message_file", str(directory / "messages.log")]
    server = _spawn("sipp", argv, directory, host, port)
    return _started(server, udp=transport != "tcp")


# --------------------------------------------------------------------------------------------------
# tinyproxy
# --------------------------------------------------------------------------------------------------

TINYPROXY_CONF = """\
Port {port}
Listen {host}
Allow {host}
Timeout 30
MaxClients 20
LogLevel Info
PidFile "{run}/tinyproxy.pid"
{user}
"""


def start_tinyproxy(directory: Path, host: str = "127.0.0.1") -> Server:
    """tinyproxy in the foreground on host (only host may use it)."""
    require(shutil.which("tinyproxy") is not None, "tinyproxy is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    port = free_port(host)
    run = directory / "run"
    run.mkdir(exist_ok=True)
    user = ""
    if os.geteuid() == 0:  # tinyproxy drops to this user, which must be able to remove its pid file
        user = "User nobody\nGroup nogroup"
        shutil.chown(run, "nobody", "nogroup")
    conf = directory / "tinyproxy.conf"
    conf.write_text(TINYPROXY_CONF.format(port=port, host=host, run=run, user=user))
    return _started(_spawn("tinyproxy", ["tinyproxy", "-d", "-c", str(conf)], directory, host, port))


# --------------------------------------------------------------------------------------------------
# A line protocol under socat
# --------------------------------------------------------------------------------------------------

LINE_SERVER = """\
#!/bin/sh
# PING -> +PONG, ECHO x -> x, else -ERR; the last line may lack its newline.
echo "+OK saru test server"
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    PING) echo "+PONG" ;;
    "ECHO "*) echo "${line#ECHO }" ;;
    *) echo "-ERR unknown command" ;;
  esac
done
"""


def start_line_server(directory: Path, protocol: str = "tcp", host: str = "127.0.0.1",
                      program: str | None = None) -> Server:
    """socat running LINE_SERVER (or ``program``) per TCP connection or per UDP datagram."""
    require(shutil.which("socat") is not None, "socat is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "lines.sh"
    script.write_text(LINE_SERVER)
    script.chmod(0o755)
    if protocol == "udp":
        port = free_port(host, socket.SOCK_DGRAM)
        listen = f"UDP-RECVFROM:{port},bind={host},fork"
    else:
        port = free_port(host)
        listen = f"TCP-LISTEN:{port},bind={host},reuseaddr,fork"
    server = _spawn("socat", ["socat", listen, f"EXEC:{program or script}"], directory, host, port)
    return _started(server, udp=protocol == "udp")
