"""The BIRD 2 driver: Saru's VIP announcements through a BIRD daemon it configures (and, by default, runs).

Why BIRD 2 (docs/scale-out.md has the comparison): one small process (Debian 12: bird2 2.0.12) with
BFD built in, a control socket whose commands add and withdraw a route without a restart and without
touching the BGP sessions, and the daemon GitHub's GLB directors run.

How a route is added and withdrawn: each VIP has two static protocols, ``saru_up_<vip>`` (the VIP's
host route with ``[bgp] med``) and ``saru_dn_<vip>`` (with ``down_med``), both written ``disabled``;
``announce`` enables the one the VIP's state asks for and disables the other (``enable``/``disable``
on the control socket: the BGP protocols export the change as an UPDATE; nothing is reloaded). A BGP
protocol per neighbour exports only those statics, next hop self, imports nothing. BFD (``bfd on``)
when the neighbour's ``bfd`` is true.

``manage = true`` (the default): Saru writes the whole configuration, checks it (``bird -p``), starts
``bird -f`` under ``setpriv --pdeathsig KILL`` — a director that dies, even by SIGKILL, takes its
routing daemon with it, so its sessions drop and the routers stop sending it traffic — and stops it on
the way out after withdrawing. ``manage = false``: Saru writes only its protocols (``include`` the
file in your bird.conf, with a ``protocol bfd`` if a neighbour uses BFD) and runs ``configure`` on the
operator's daemon at ``[bgp] socket``; on the way out it withdraws and leaves the daemon running.

The capabilities a managed BIRD gets (``needed_caps``), raised for its exec alone (``saru.caps.
raised_for_exec``: the daemon keeps its own for itself, ``saru.caps.keep_for_self_only``) and only those
this process holds: CAP_NET_BIND_SERVICE (BIRD listens on TCP port 179 for its neighbours; without it
every session fails with "No listening socket") and, when a neighbour has ``bfd = true``,
CAP_NET_ADMIN (BIRD gives its BFD sockets SO_PRIORITY 7, which the kernel allows only with it: without
it "SO_PRIORITY: Operation not permitted" and no BFD session comes up). TCP MD5 (``password``) needs
none. As root nothing is raised: BIRD runs as root, as it always did. BIRD is started from the event
loop's thread, synchronously (no other program can be started by that thread meanwhile, and
``--pdeathsig`` follows the thread that forked, which lives as long as the daemon).

``render`` is pure; ``BirdDriver`` does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from saru.bgp.base import RoutingDaemonError, SessionDoc
from saru.bgp.birdctl import BirdControl, BirdError
from saru.bgp.decide import Route
from saru.caps import CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, raised_for_exec
from saru.files import write_file
from saru.model import BGPSettings
from saru.subproc import run_command

__all__ = ["BirdDriver", "needed_caps", "protocol_names", "render"]

LOGGER = logging.getLogger("saru")
START_TIMEOUT = 10.0  # seconds for a started BIRD to answer on its socket
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL of a managed BIRD


def _ident(address: str) -> str:
    """A VIP or neighbour address as a BIRD symbol suffix: ``10_77_6_240``, ``fd00__240``."""
    return re.sub(r"[^0-9A-Za-z]", "_", str(ipaddress.ip_address(address)))


def protocol_names(vip: str) -> tuple[str, str]:
    """The two static protocols of ``vip``: announced as up, announced as down."""
    return f"saru_up_{_ident(vip)}", f"saru_dn_{_ident(vip)}"


def _family(address: str) -> str:
    return "ipv6" if ipaddress.ip_address(address).version == 6 else "ipv4"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(settings: BGPSettings, vips: Sequence[str], *, managed: bool, log_path: str | None = None) -> str:
    """The BIRD configuration for ``vips`` (the whole file when ``managed``, else Saru's protocols only)."""
    lines = ["# Written by Saru ([bgp] of saru.toml): every change here is lost at the next start or reload.", ""]
    if managed:
        lines += [f"router id {settings.router_id};"]
        if log_path:
            lines += [f"log {_quoted(log_path)} all;"]
        lines += ["protocol device { }", ""]
        if any(n.bfd for n in settings.neighbors):
            ms = max(1, round(settings.bfd_interval * 1000))
            lines += ["protocol bfd saru_bfd {",
                      f"  interface \"*\" {{ interval {ms} ms; multiplier {settings.bfd_multiplier}; }};",
                      "}", ""]
    for vip in vips:
        family = _family(vip)
        prefix = f"{vip}/{32 if family == 'ipv4' else 128}"
        for name, med in zip(protocol_names(vip), (settings.med, settings.down_med), strict=True):
            lines.append(f"protocol static {name} {{ disabled; {family}; "
                         f"route {prefix} blackhole {{ bgp_med = {med}; }}; }}")
    lines.append("")
    keepalive = max(1, settings.hold_time // 3)
    for index, n in enumerate(settings.neighbors):
        family = _family(n.address)
        lines += [f"protocol bgp saru_peer{index} {{",
                  f"  description {_quoted('saru neighbour ' + n.address)};",
                  f"  local as {settings.asn};",
                  f"  neighbor {n.address} as {n.asn};",
                  f"  hold time {settings.hold_time}; keepalive time {keepalive};"
                  if settings.hold_time else "  hold time 0;",
                  "  connect delay time 1; connect retry time 2; error wait time 1, 10;"]
        if n.password:
            lines.append(f"  password {_quoted(n.password)};")
        if n.bfd:
            lines.append("  bfd on;")
        lines += [f"  {family} {{ import none; export where proto ~ \"saru_*\"; next hop self; }};", "}", ""]
    return "\n".join(lines)


def needed_caps(settings: BGPSettings) -> tuple[int, ...]:
    """The capabilities a BIRD managed for ``settings`` needs: port 179, and SO_PRIORITY for BFD."""
    return (CAP_NET_BIND_SERVICE, CAP_NET_ADMIN) if any(n.bfd for n in settings.neighbors) \
        else (CAP_NET_BIND_SERVICE,)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by this user only (a new file of mode 0600, whatever was there)."""
    path.unlink(missing_ok=True)
    write_file(path, text, 0o600)


def _session_lines(reply_lines: Sequence[tuple[int, str]]) -> dict[str, tuple[str, str]]:
    """``show protocols``'s rows (code 1002): protocol name → (state, info)."""
    rows: dict[str, tuple[str, str]] = {}
    for code, text in reply_lines:
        fields = text.split()
        if code == 1002 and len(fields) >= 4:
            rows[fields[0]] = (fields[3], " ".join(fields[5:]))
    return rows


def _bfd_lines(reply_lines: Sequence[tuple[int, str]]) -> dict[str, str]:
    """``show bfd sessions``' rows (code 1020): neighbour address → state."""
    found: dict[str, str] = {}
    for code, text in reply_lines:
        fields = text.split()
        if code == 1020 and len(fields) >= 3:
            with contextlib.suppress(ValueError):
                found[str(ipaddress.ip_address(fields[0]))] = fields[2]
    return found


class BirdDriver:
    """Announces VIPs through BIRD 2. ``workdir``/``stem``: where its files go (next to Saru's control
    socket: ``<stem>-bird.conf``, ``-bird.ctl``, ``-bird.log``)."""

    name = "bird"

    def __init__(self, settings: BGPSettings, vips: Sequence[str], workdir: Path, stem: str = "saru",
                 binary: str = "bird") -> None:
        self.settings = settings
        self.vips = tuple(vips)
        self.binary = binary
        self.config_path = workdir / f"{stem}-bird.conf"
        self.log_path = workdir / f"{stem}-bird.log"
        self.socket_path = settings.socket or str(workdir / f"{stem}-bird.ctl")
        self.control = BirdControl(self.socket_path)
        self.process: subprocess.Popen[bytes] | None = None
        self.caps: tuple[int, ...] = ()  # what the running managed BIRD was started with
        self.routes: dict[str, Route] = {}  # what BIRD was last told, per VIP
        self.changed_at: dict[str, float] = {}

    @property
    def managed(self) -> bool:
        return self.settings.manage

    def alive(self) -> bool:
        """False once a managed BIRD has exited."""
        return not self.managed or (self.process is not None and self.process.poll() is None)

    async def _write_config(self) -> None:
        text = render(self.settings, self.vips, managed=self.managed, log_path=str(self.log_path))
        tmp = self.config_path.with_suffix(".tmp")
        await asyncio.to_thread(_write_private, tmp, text)  # it may hold the neighbours' passwords
        if self.managed:
            binary = shutil.which(self.binary) or shutil.which(self.binary, path="/usr/sbin:/sbin")
            if binary is None:
                raise RoutingDaemonError(f"{self.binary} is not installed (Debian: apt install bird2)")
            outcome = await run_command([binary, "-p", "-c", str(tmp)], 10)
            if outcome.returncode != 0:
                detail = (outcome.stderr or outcome.stdout).decode(errors="replace").strip()
                raise RoutingDaemonError(f"BIRD refuses the configuration Saru wrote: {detail}")
        await asyncio.to_thread(os.replace, tmp, self.config_path)

    async def start(self) -> None:
        """Write the configuration; start BIRD (managed) or load it into the running one. Every VIP starts
        withdrawn."""
        await self._write_config()
        self.routes = {}
        if not self.managed:
            await self._configure()
            await self.announce(dict.fromkeys(self.vips, "withdrawn"), force=True)
            return
        binary = shutil.which(self.binary) or shutil.which(self.binary, path="/usr/sbin:/sbin") or self.binary
        argv = [binary, "-f", "-c", str(self.config_path), "-s", self.socket_path,
                "-P", str(self.config_path.with_suffix(".pid"))]
        setpriv = shutil.which("setpriv")
        if setpriv is not None:  # BIRD dies with this process, even one killed by SIGKILL
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        else:
            LOGGER.warning("setpriv (util-linux) not found: BIRD would outlive a killed Saru")
        out = await asyncio.to_thread(open, self.log_path.with_suffix(".out"), "ab")
        self.caps = needed_caps(self.settings)
        try:
            # synchronous on purpose: the capabilities are raised in this thread, for this exec alone
            with raised_for_exec(self.caps):
                self.process = subprocess.Popen(  # noqa: ASYNC220
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        finally:
            out.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RoutingDaemonError(f"BIRD exited at start ({self.process.returncode}); see "
                                         f"{self.log_path.with_suffix('.out')}")
            try:
                await self.control.command("show status")
                break
            except BirdError as exc:
                if time.monotonic() > deadline:
                    await self._kill()
                    raise RoutingDaemonError(f"BIRD did not answer on {self.socket_path}: {exc}") from exc
                await asyncio.sleep(0.05)
        LOGGER.info("BGP: BIRD started (pid %d, %s)", self.process.pid, self.config_path)

    async def reconfigure(self, settings: BGPSettings, vips: Sequence[str]) -> None:
        """A reload: new settings or VIPs; BIRD reconfigures softly (sessions whose settings did not
        change stay up) and every VIP's route is told again."""
        self.settings, self.vips = settings, tuple(vips)
        previous = self.routes
        if self.managed and self.alive() and os.geteuid() != 0 and needed_caps(settings) != self.caps:
            # BFD switched on or off: BIRD needs other capabilities, which only a new exec can give
            # (a root BIRD has them all: reconfigured softly like any other change)
            LOGGER.info("BGP: BIRD restarted (BFD now %s: other capabilities)",
                        "on" if CAP_NET_ADMIN in needed_caps(settings) else "off")
            await self._kill()
            await self.start()
        else:
            await self._write_config()
            await self._configure()
        self.routes = {}
        await self.announce({vip: previous.get(vip, "withdrawn") for vip in self.vips}, force=True)

    async def _configure(self) -> None:
        try:
            if self.managed:
                reply = await self.control.command(f"configure {_quoted(str(self.config_path))}")
            else:
                reply = await self.control.command("configure")
        except BirdError as exc:
            raise RoutingDaemonError(str(exc)) from exc
        if reply.code not in (3, 4, 18, 19, 20):  # reconfigured, in progress, undo/confirm codes
            LOGGER.info("BGP: BIRD configure: %s", reply.text())

    async def announce(self, routes: Mapping[str, Route], force: bool = False) -> list[str]:
        """Make BIRD announce each VIP as ``routes`` says; returns the VIPs whose route changed."""
        changed = []
        for vip, route in routes.items():
            if not force and self.routes.get(vip) == route:
                continue
            up, dn = protocol_names(vip)
            enable = {"up": [up], "down": [dn], "withdrawn": []}[route]
            disable = [p for p in (up, dn) if p not in enable]
            try:
                for name in enable:  # make before break: the new route first
                    await self.control.command(f"enable {name}")
                for name in disable:
                    await self.control.command(f"disable {name}")
            except BirdError as exc:
                self.routes.pop(vip, None)
                raise RoutingDaemonError(str(exc)) from exc
            if self.routes.get(vip, "withdrawn") != route:  # a VIP starts withdrawn: not a change
                changed.append(vip)
                self.changed_at[vip] = time.time()
            self.routes[vip] = route
        return changed

    async def sessions(self) -> list[SessionDoc]:
        """Each neighbour's BGP session (and BFD session) as BIRD sees it."""
        try:
            rows = _session_lines((await self.control.command("show protocols")).lines)
            bfd = _bfd_lines((await self.control.command("show bfd sessions")).lines) \
                if any(n.bfd for n in self.settings.neighbors) else {}
        except BirdError as exc:
            return [SessionDoc(address=n.address, asn=n.asn, state="unknown", info=str(exc),
                               bfd=None) for n in self.settings.neighbors]
        docs = []
        for index, n in enumerate(self.settings.neighbors):
            state, info = rows.get(f"saru_peer{index}", ("unknown", "not in BIRD"))
            session = info.split()[0] if info else state
            docs.append(SessionDoc(address=n.address, asn=n.asn, state=session, info=info,
                                   bfd=(bfd.get(str(ipaddress.ip_address(n.address)), "down") if n.bfd else None)))
        return docs

    async def close(self) -> None:
        """Withdraw every VIP; stop a managed BIRD (its sessions close with a Cease)."""
        with contextlib.suppress(RoutingDaemonError):
            if self.alive():
                await self.announce(dict.fromkeys(self.vips, "withdrawn"))
        await self.control.close()
        if self.managed:
            await self._kill()

    async def _kill(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
