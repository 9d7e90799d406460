"""Shared test utilities: loud-in-CI requirements, free ports, real nginx servers on loopback, and
whether a process is gone; system users, shared directories and /proc status for the least-privilege
tests; a directory watched with inotify (``Watch``)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from saru.subproc import RunAs

IN_CI = bool(os.environ.get("SARU_REQUIRE_ALL") or os.environ.get("CI"))


def require(condition: bool, reason: str) -> None:
    """Skip on a developer laptop, fail loudly in CI, when a test's prerequisite is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {reason}")
    pytest.skip(reason)


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port that is free right now on host (TCP by default)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until a TCP connect to host:port succeeds (polling a real event: the listen socket)."""
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            last = exc
            time.sleep(0.02)
    raise TimeoutError(f"{host}:{port} did not open within {timeout}s: {last}")


NGINX_CONF = """\
{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp;
    scgi_temp_path {dir}/tmp;
    keepalive_requests 1000000;
    default_type text/plain;
{servers}
}}
"""

NGINX_SERVER = """\
    server {{
        listen {listen}{ssl};
        server_name {server_name};
{tls}        root {root};
        add_header X-Real-Server {name} always;
    }}
"""


@dataclass
class Nginx:
    """A real nginx serving files from ``root`` on host:port; stop() ends it."""

    name: str
    host: str
    port: int
    root: Path
    directory: Path
    https: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        scheme = "https" if self.https else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def write(self, path: str, content: str) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)

    def remove(self, path: str) -> None:
        (self.root / path.lstrip("/")).unlink(missing_ok=True)

    def start(self) -> None:
        conf = self.directory / "nginx.conf"
        self.process = subprocess.Popen(
            ["nginx", "-c", str(conf), "-e", str(self.directory / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_port(self.host, self.port)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process and self.process.stderr:
            self.process.stderr.close()
        self.process = None


def make_self_signed_cert(directory: Path, names: tuple[str, ...] = ("localhost",)) -> tuple[Path, Path]:
    """A self-signed certificate and key made with the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    san = ",".join(f"DNS:{n}" for n in names) + ",IP:127.0.0.1"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={names[0]}", "-addext", f"subjectAltName={san}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def start_nginx(
    directory: Path,
    name: str = "rs",
    host: str = "127.0.0.1",
    port: int | None = None,
    files: Mapping[str, str] | None = None,
    https: bool = False,
    server_names: Mapping[str, Mapping[str, str]] | None = None,
) -> Nginx:
    """Start a real nginx. ``server_names`` maps extra virtual host names to their own files."""
    require(shutil.which("nginx") is not None, "nginx is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tmp").mkdir(exist_ok=True)
    port = port or free_port(host)
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    tls = ""
    ssl = ""
    if https:
        cert, key = make_self_signed_cert(directory, ("localhost", *(server_names or {})))
        tls = f"        ssl_certificate {cert};\n        ssl_certificate_key {key};\n"
        ssl = " ssl"
    root = directory / "root"
    root.mkdir(exist_ok=True)
    servers = NGINX_SERVER.format(listen=listen + " default_server", ssl=ssl, server_name="_", tls=tls,
                                  root=root, name=name)
    for vhost, vfiles in (server_names or {}).items():
        vroot = directory / f"root-{vhost}"
        vroot.mkdir(exist_ok=True)
        for path, content in vfiles.items():
            (vroot / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (vroot / path.lstrip("/")).write_text(content)
        servers += NGINX_SERVER.format(listen=listen, ssl=ssl, server_name=vhost, tls=tls, root=vroot,
                                       name=f"{name}-{vhost}")
    user = "user root;" if os.geteuid() == 0 else ""
    (directory / "nginx.conf").write_text(NGINX_CONF.format(user=user, dir=directory, servers=servers))
    server = Nginx(name=name, host=host, port=port, root=root, directory=directory, https=https)
    for path, content in (files or {}).items():
        server.write(path, content)
    server.start()
    return server


class HungServer:
    """A TCP listener that completes handshakes (kernel backlog) but never reads or answers."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(1024)
        self.host = host
        self.port: int = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


def process_gone(pid: int) -> bool:
    """Whether a process no longer exists (a zombie nobody reaps counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return True
    return fields[0] == "Z"


async def wait_process_gone(pid: int, deadline: float) -> bool:
    """Poll (every 50 ms, up to ``deadline`` seconds) until ``process_gone(pid)``; its last answer."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process_gone(pid):
            return True
        await asyncio.sleep(0.05)
    return process_gone(pid)


# ---- least privilege (tests/integration/test_privileges.py, tests/kernel/test_privileges_nft.py) ----


@contextlib.contextmanager
def system_user() -> Iterator[RunAs]:
    """A system user made for a test (removed afterwards); needs root."""
    require(os.geteuid() == 0, "needs root (useradd, a daemon that drops privileges)")
    require(shutil.which("useradd") is not None, "needs useradd")
    name = f"saru-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield RunAs.lookup(name)
    finally:
        subprocess.run(["userdel", name], check=False)


@contextlib.contextmanager
def shared_workdir() -> Iterator[Path]:
    """A directory every user can read (pytest's tmp dirs are root's, mode 0700); ``out/`` writable by all."""
    path = Path(tempfile.mkdtemp(prefix="saru-priv-", dir="/tmp"))
    path.chmod(0o755)
    (path / "out").mkdir()
    (path / "out").chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def readable_python() -> tuple[str, str]:
    """A python3 and PYTHONPATH another user can read: a daemon that drops privileges imports modules
    later. This machine's interpreter may live under /root (mode 0700): then Debian's python3 (what
    the .deb runs) with this checkout and its venv's site-packages."""
    import saru

    checkout = str(Path(saru.__file__).parent.parent)
    site = next(p for p in sys.path if p.endswith("site-packages"))
    stdlib = os.path.dirname(os.__file__)
    if all(os.stat(p).st_mode & 0o005 == 0o005 for p in Path(stdlib).parents if str(p) != "/") \
            and os.stat(stdlib).st_mode & 0o005 == 0o005:
        return sys.executable, os.pathsep.join((checkout, site))
    system = shutil.which("python3", path="/usr/bin")
    require(system is not None and subprocess.run([system, "-c", "import sys; assert sys.version_info >= (3, 11)"],
                                                  check=False).returncode == 0,
            "this Python is not readable by other users and /usr/bin/python3 is older than 3.11")
    assert system is not None
    return system, os.pathsep.join((checkout, site))


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


IN_ATTRIB = 0x004
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len of the name

_libc = ctypes.CDLL(None, use_errno=True)


class Watch:
    """A directory watched with inotify (through libc, no dependency), to prove a file had its mode
    from the moment it appeared (created, no attribute change after): ``with Watch(directory) as w:
    ...; w.events()`` → [(name, "create" | "attrib" | "moved_to")]."""

    def __init__(self, directory: Path) -> None:
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if _libc.inotify_add_watch(self.fd, os.fsencode(directory), IN_ATTRIB | IN_CREATE | IN_MOVED_TO) < 0:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory}")

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def events(self) -> list[tuple[str, str]]:
        """The events queued so far (not waiting for more)."""
        found: list[tuple[str, str]] = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return found
            at = 0
            while at < len(buf):
                _, mask, _, length = _HEADER.unpack_from(buf, at)
                name = buf[at + _HEADER.size: at + _HEADER.size + length].rstrip(b"\0").decode()
                at += _HEADER.size + length
                for bit, word in ((IN_CREATE, "create"), (IN_ATTRIB, "attrib"), (IN_MOVED_TO, "moved_to")):
                    if mask & bit:
                        found.append((name, word))
