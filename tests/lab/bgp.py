"""The BGP scale-out bed: a BIRD router doing ECMP, Saru directors peering with it, four DR reals, clients.

```
 cl1 172.18.0.10, cl2 172.18.0.11 ── bridge wan ── rt 172.18.0.1
 rt 10.88.0.1: BIRD AS 65000, BFD, kernel ECMP (merge paths), fib_multipath_hash_policy=1 (L4)
 ld1..ld4 10.88.0.2-5: saru run, DR plane (nft or ipvs), [bgp] AS 65001 → rt   ── bridge lan
 fe1..fe4 10.88.0.11-14: nginx, VIP 10.88.100.1 on lo (DR), replies straight to rt
```
Every namespace is ``saru-g<pid>x<n>-<role>`` (``tests.lab.Lab``), deleted even after a failure.
``director(role)`` starts Saru there (``saru.toml`` with ``[bgp]``), ``dead(role)`` makes a director's
machine vanish (link down, then SIGKILL), ``paths()`` reads the router's ECMP next hops, ``peer(role, on)``
switches the router's session to a director, ``downloads(role, n)`` starts long downloads from a client.

``plane``: ``nft`` (the host tier, tests/bgp) or ``ipvs`` (only in the QEMU guest, tests/vm/guest): IPVS
forwards only what is addressed to the director itself, so there the VIP is on each director's lo too
(ARP hidden like on the reals), and the directors run ``quiescent=yes`` (IPVS ``mh`` fills its table in
the order of the destination list: a real removed and added again would be appended, docs/scale-out.md).
A director's pinned flows are its nftables flow sets, or its IPVS connection table.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from tests.helpers import NGINX_CONF
from tests.lab.daemon import NIC_FILTER, NsDaemon
from tests.lab.netns import Lab
from tests.lab.probe import can_build
from tests.lab.procs import stop_process
from tests.lab.wait import wait_for

VIP = "10.88.100.1"
ROUTER = "10.88.0.1"
DIRECTORS = {"ld1": "10.88.0.2", "ld2": "10.88.0.3", "ld3": "10.88.0.4", "ld4": "10.88.0.5"}
REALS = {"fe1": "10.88.0.11", "fe2": "10.88.0.12", "fe3": "10.88.0.13", "fe4": "10.88.0.14"}
CLIENTS = {"cl1": "172.18.0.10", "cl2": "172.18.0.11"}
BIG = 3584 * 1024  # bytes of /slow/big: a download of BIG / RATE seconds
RATE = "400k"
DOWNLOADS = Path(__file__).with_name("downloads.py")
PLANES = ("nft", "ipvs")
HIDDEN_VIP = tuple(f"net.ipv4.conf.{key}.{name}={value}" for key in ("all", "eth0")
                   for name, value in (("arp_ignore", 1), ("arp_announce", 2)))

LDIRECTORD_CF = """\
checktimeout={check_timeout:g}
checkinterval={check_interval:g}
autoreload=no
quiescent={quiescent}
logfile="{log}"

virtual={vip}:80
{reals}
\tservice=http
\tscheduler={scheduler}
{flags}\tprotocol=tcp
\tchecktype=negotiate
\tcheckport=80
\trequest="check.html"
\treceive="up"
"""


def router_conf(bfd: bool, hold: int, log: Path, interval: float, multiplier: int) -> str:
    bfd_protocol = (f'protocol bfd {{ interface "*" {{ interval {round(interval * 1000)} ms; '
                    f'multiplier {multiplier}; }}; }}') if bfd else ""
    peers = "\n".join(f"protocol bgp {role} from directors {{ neighbor {addr} as 65001; }}"
                      for role, addr in DIRECTORS.items())
    return f"""\
router id {ROUTER};
log "{log}" {{ info, remote, warning, error, auth, fatal, bug }};
protocol device {{ scan time 1; }}
protocol direct {{ disabled; }}
protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}
{bfd_protocol}
template bgp directors {{
  local as 65000; hold time {hold}; keepalive time 1;
  connect delay time 1; connect retry time 1; error wait time 1, 2;
  {"bfd on;" if bfd else ""}
  ipv4 {{ import all; export none; }};
}}
{peers}
"""


class Director(NsDaemon):
    """One ``saru run`` with ``[bgp]`` in a director namespace."""

    def __init__(self, bed: BGPBed, role: str, workdir: Path, proc: subprocess.Popen[str]) -> None:
        super().__init__(role, workdir, proc)
        self.bed = bed

    def bgp(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.ask("status")["bgp"]
        return doc

    def flows(self) -> set[tuple[str, int]]:
        """(client address, port) of every flow this director's DR plane has pinned to a real, open or
        closing (nft: its flow and closing sets; IPVS: its connection table)."""
        if self.bed.plane == "ipvs":
            return self.ipvs_flows()
        got = self.bed.run(self.role, "nft", "-j", "list", "table", "netdev", "saru", check=False)
        found: set[tuple[str, int]] = set()
        if got.returncode != 0:
            return found
        for item in json.loads(got.stdout).get("nftables", []):
            s = item.get("set")
            if not s or not str(s.get("name", "")).startswith(("f_", "z_")):
                continue
            for elem in s.get("elem", []):
                value = elem.get("elem", {}).get("val", elem) if isinstance(elem, dict) else elem
                concat = value.get("concat") if isinstance(value, dict) else None
                if concat and len(concat) == 2:
                    found.add((str(concat[0]), int(concat[1])))
        return found

    def ipvs_flows(self) -> set[tuple[str, int]]:
        """The client ends of this namespace's IPVS connections (``ipvsadm -Lnc``: pro expire state
        source virtual destination), any state."""
        found: set[tuple[str, int]] = set()
        for line in self.bed.run(self.role, "ipvsadm", "-Lnc").stdout.splitlines():
            fields = line.split()
            if len(fields) >= 6 and fields[0] in ("TCP", "UDP"):
                address, _, port = fields[3].rpartition(":")
                found.add((address, int(port)))
        return found

    def real_out(self, real: str) -> bool:
        """Whether ``real`` has no weight in this director's table (removed, or quiesced at weight 0)."""
        table = self.ask("table")["table"]
        return not any(dest["address"] == REALS[real] and dest.get("weight", 1) > 0
                       for s in table for dest in s.get("dests", []))

    def stop(self) -> int:
        stop_process(self.proc, 20)
        return int(self.proc.returncode)


class BGPBed(Lab):
    roles = ("br", "rt", *DIRECTORS, *REALS, *CLIENTS)
    tag = "g"
    timeout = 30

    def __init__(self, workdir: Path, *, plane: str = "nft", bfd: bool = True, hold: int = 9,
                 bfd_interval: float = 0.2, bfd_multiplier: int = 5, check_interval: float = 0.5,
                 big: int = BIG, rate: str = RATE, stall: float = 6.0) -> None:
        """``bfd_interval`` x ``bfd_multiplier``: the BFD detection time on both sides. The tests use 1 s:
        100 ms x 3 (Saru's default) flaps on a CI machine loaded far beyond its cores, where BIRD may not
        run for 300 ms; the benchmark measures the default. ``big`` bytes at ``rate``: one download
        (``/slow/big``); ``stall``: seconds without a byte before a download counts as broken."""
        super().__init__()
        if plane not in PLANES:
            raise ValueError(f"plane must be one of {PLANES}, not {plane!r}")
        self.workdir, self.plane = workdir, plane
        self.bfd, self.hold = bfd, hold
        self.bfd_interval, self.bfd_multiplier = bfd_interval, bfd_multiplier
        self.check_interval, self.big, self.rate, self.stall = check_interval, big, rate, stall
        self.directors: dict[str, Director] = {}

    @staticmethod
    def available(plane: str = "nft") -> tuple[bool, str]:
        ok, why = can_build("nginx", "curl", "nft" if plane == "nft" else "ipvsadm",
                            what="the BGP bed (network namespaces)")
        if not ok:
            return ok, why
        return can_build("bird", "birdc", path="/usr/sbin:/usr/bin:/sbin:/bin",
                         hint=" (Debian: apt install bird2; make deps)")

    def up(self) -> Self:
        super().up()
        self.bridge("br", "lan", "stp_state", "0")
        self.bridge("br", "wan", "stp_state", "0")
        self.plug("rt", "br", "lan", "p-rt")
        self.plug("rt", "br", "wan", "w-rt", interface="eth1")
        for role in (*DIRECTORS, *REALS):
            self.plug(role, "br", "lan", f"p-{role}")
        for role in CLIENTS:
            self.plug(role, "br", "wan", f"w-{role}")
        self.add_address("rt", f"{ROUTER}/24")
        self.add_address("rt", "172.18.0.1/24", interface="eth1")
        self.sysctl("rt", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1",
                    "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.eth0.rp_filter=0",
                    "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.eth0.send_redirects=0")
        for role, address in CLIENTS.items():
            self.add_address(role, f"{address}/24")
            self.ip(role, "route", "add", "default", "via", "172.18.0.1")
        for role, address in DIRECTORS.items():
            self.add_address(role, f"{address}/24")
            self.ip(role, "route", "add", "default", "via", ROUTER)
            if self.plane == "nft":
                self.nft(role, NIC_FILTER)
            else:  # IPVS takes only packets addressed to this host (its LOCAL_IN hook)
                self.ip(role, "addr", "add", f"{VIP}/32", "dev", "lo")
                self.sysctl(role, *HIDDEN_VIP)
        for role, address in REALS.items():
            self.add_address(role, f"{address}/24")
            self.ip(role, "addr", "add", f"{VIP}/32", "dev", "lo")
            self.sysctl(role, *HIDDEN_VIP)
            self.ip(role, "route", "add", "default", "via", ROUTER)
            self.nginx(role)
        self.start_router()
        return self

    # -- the parts ------------------------------------------------------------------------------

    def nginx(self, role: str) -> None:
        d = self.workdir / f"nginx-{role}"
        (d / "tmp").mkdir(parents=True, exist_ok=True)
        (d / "root" / "slow").mkdir(parents=True, exist_ok=True)
        (d / "root" / "check.html").write_text("up\n")
        (d / "root" / "index.html").write_text(f"{role}\n")
        with (d / "root" / "slow" / "big").open("wb") as big:
            big.truncate(self.big)
        server = (f"    server {{\n        listen 80 default_server;\n        root {d}/root;\n"
                  f"        add_header X-Real-Server {role} always;\n"
                  f"        location /slow/ {{ limit_rate {self.rate}; }}\n    }}")
        (d / "nginx.conf").write_text(NGINX_CONF.format(user="user root;", dir=d, servers=server))
        self.popen(role, "nginx", "-c", str(d / "nginx.conf"), "-e", str(d / "error.log"),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.run(role, "curl", "-sf", "-m", "1", "-o", "/dev/null", "http://127.0.0.1/check.html",
                                  check=False).returncode == 0, 10, f"nginx in {role}", interval=0.05)

    def start_router(self) -> None:
        d = self.workdir / "router"
        d.mkdir(exist_ok=True)
        (d / "bird.conf").write_text(router_conf(self.bfd, self.hold, d / "bird.log", self.bfd_interval,
                                                           self.bfd_multiplier))
        self.router_socket = d / "bird.ctl"
        # every change of the router's routes, time-stamped (read when a test fails)
        self.popen("rt", "ip", "-ts", "monitor", "route", stdout=(d / "routes.log").open("w"),
                   stderr=subprocess.STDOUT)
        self.popen("rt", "bird", "-f", "-c", str(d / "bird.conf"), "-s", str(self.router_socket),
                   "-P", str(d / "bird.pid"), stdout=(d / "bird.out").open("w"), stderr=subprocess.STDOUT)
        wait_for(lambda: self.run("rt", "birdc", "-s", str(self.router_socket), "show", "status",
                                  check=False).returncode == 0, 10, "BIRD in the router", interval=0.05)

    def director(self, role: str, *, scheduler: str = "mh", flags: str = "mh-port", bfd: bool | None = None,
                 weights: dict[str, int] | None = None, reals: tuple[str, ...] = tuple(REALS),
                 down: str = "withdraw", wait: bool = True, bgp: bool = True) -> Director:
        """Start Saru in ``role`` (the bed's DR plane, ``[bgp]`` to the router unless ``bgp`` is False);
        ``wait``: until it announces."""
        d = self.workdir / f"{role}-{time.monotonic_ns()}"
        d.mkdir(parents=True)
        weights = weights or {}
        lines = "\n".join(f"\treal={REALS[r]}:80 gate {weights.get(r, 1)}" for r in reals)
        (d / "ldirectord.cf").write_text(LDIRECTORD_CF.format(
            log=d / "ldirectord.log", vip=VIP, reals=lines, scheduler=scheduler,
            flags=f"\tschedflags={flags}\n" if flags else "", check_interval=self.check_interval,
            check_timeout=2 * self.check_interval, quiescent="yes" if self.plane == "ipvs" else "no"))
        use_bfd = self.bfd if bfd is None else bfd
        toml = f'[director]\nconfig = "ldirectord.cf"\ndataplane = "{self.plane}"\n\n'
        if bgp:
            toml += (f'[bgp]\nasn = 65001\nrouter_id = "{DIRECTORS[role]}"\nhold_time = {self.hold}\n'
                     f'down = "{down}"\nbfd_interval = {self.bfd_interval}\nbfd_multiplier = {self.bfd_multiplier}\n\n'
                     f'[[bgp.neighbors]]\naddress = "{ROUTER}"\nasn = 65000\n'
                     f'bfd = {"true" if use_bfd else "false"}\n')
        (d / "saru.toml").write_text(toml)
        with (d / "saru.out").open("w") as out:
            proc = self.python(role, "saru", "run", "-c", str(d / "saru.toml"), "--control", str(d / "saru.sock"),
                               stdout=out, stderr=subprocess.STDOUT)
        director = self.directors[role] = Director(self, role, d, proc)
        if wait:
            self.wait_paths(lambda paths: DIRECTORS[role] in paths, f"{role}'s route at the router", proc=director)
        return director

    def dead(self, role: str) -> None:
        """The director's machine vanishes: its link goes down, then everything in it is SIGKILLed."""
        self.ip(role, "link", "set", "eth0", "down")
        director = self.directors.pop(role, None)
        if director is not None:
            director.proc.kill()
            director.proc.wait(10)
        clean = "ipvsadm -C" if self.plane == "ipvs" else "nft delete table netdev saru"
        self.run(role, "sh", "-c", f"{clean} 2>/dev/null; true", check=False)

    def revive(self, role: str) -> None:
        self.ip(role, "link", "set", "eth0", "up")

    def peer(self, role: str, on: bool) -> None:
        """Switch the router's BGP session to director ``role`` on or off (``birdc enable|disable``)."""
        self.run("rt", "birdc", "-s", str(self.router_socket), "enable" if on else "disable", role)

    def route_log(self) -> str:
        log = self.workdir / "router" / "routes.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def paths(self) -> set[str]:
        """The router's kernel next hops for the VIP."""
        got = json.loads(self.ip("rt", "-j", "route", "show", f"{VIP}/32") or "[]")
        hops: set[str] = set()
        for route in got:
            if route.get("gateway"):
                hops.add(str(route["gateway"]))
            for nh in route.get("nexthops", []):
                hops.add(str(nh["gateway"]))
        return hops

    def wait_paths(self, condition: Callable[[set[str]], bool], what: str, timeout: float = 20,
                   proc: Director | None = None) -> set[str]:
        def check() -> set[str] | None:
            if proc is not None and proc.proc.poll() is not None:
                raise RuntimeError(f"saru in {proc.role} exited {proc.proc.returncode}:\n{proc.logtext()}")
            paths = self.paths()
            return (paths or {"(none)"}) if condition(paths) else None
        return wait_for(check, timeout, what, interval=0.02)

    def curl(self, role: str = "cl1", timeout: float = 1.0) -> str | None:
        got = self.run(role, "curl", "-s", "-f", "-m", str(timeout), f"http://{VIP}/", check=False,
                       timeout=timeout + 5)
        return got.stdout.strip() if got.returncode == 0 else None

    def downloads(self, role: str, count: int) -> Downloads:
        return Downloads(self, role, count)

    def load(self, per_client: int) -> list[Downloads]:
        """``per_client`` long downloads from each client, started together."""
        loads = [Downloads(self, role, per_client, wait=False) for role in CLIENTS]
        for d in loads:
            d.wait_ready()
        return loads

    def flows_by_director(self, loads: list[Downloads]) -> dict[str, set[tuple[str, int]]]:
        """Which director each download's flow is pinned on, read once all are set up."""
        keys = set().union(*(d.keys() for d in loads))
        return {role: d.flows() & keys for role, d in self.directors.items()}

    def stop_nginx(self, role: str) -> None:
        """A fast shutdown of ``role``'s nginx: its connections close now."""
        pid = (self.workdir / f"nginx-{role}" / "nginx.pid").read_text().split()[0]
        subprocess.run(["kill", "-TERM", pid], check=False)


def broken(loads: list[Downloads]) -> dict[tuple[str, int], str]:
    """(client, port) → real and error of every download that did not complete."""
    out: dict[tuple[str, int], str] = {}
    for d in loads:
        for r in d.results():
            if r["error"] is not None or r["bytes"] != r["length"]:
                out[(CLIENTS[d.role], int(r["port"]))] = f"{r['real']}: {r['error']} ({r['bytes']}/{r['length']})"
    return out


class Downloads:
    """``count`` long downloads from client ``role`` (``tests/lab/downloads.py``), established on creation
    (``wait``) or once ``wait_ready`` returns."""

    def __init__(self, bed: BGPBed, role: str, count: int, *, wait: bool = True) -> None:
        self.bed, self.role = bed, role
        # by path, isolated and without site: stdlib only, so it starts fast even under emulation
        # (``-m tests.lab.downloads`` would import the whole lab package first)
        self.proc = bed.popen(role, sys.executable, "-I", "-S", str(DOWNLOADS), str(count),
                              f"http://{VIP}/slow/big", str(bed.stall), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        self.started: list[dict[str, Any]] = []
        self._results: list[dict[str, Any]] | None = None
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Until every connection is established and has its response headers."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"downloads in {self.role} did not start: {line!r} {err}")
        self.started = json.loads(line[6:])

    def keys(self) -> set[tuple[str, int]]:
        return {(CLIENTS[self.role], int(d["port"])) for d in self.started}

    def results(self, timeout: float = 60) -> list[dict[str, Any]]:
        """Every download's outcome (waits for them to end); read once, kept."""
        if self._results is not None:
            return self._results
        assert self.proc.stdout is not None
        out, _ = self.proc.communicate(timeout=timeout)
        for line in out.splitlines():
            if line.startswith("done "):
                self._results = json.loads(line[5:])
                return self._results
        raise RuntimeError(f"downloads in {self.role} gave no result: {out!r}")
