"""The guide's HA topology in network namespaces: two full Saru directors sharing a floating IP.

Built on ``tests.lab.guide.Topology`` (client, upstream router, LD1, LD2, FE1, FE2 with nginx
serving ``/haCheker/haCheck.html`` = "up and running", one bridge): ``HABed.up()`` builds it, then
takes the VIP (and the NAT gateway address) off LD1 — here the HA node owns them — and makes LD2 a
director like LD1. ``director()`` writes an ldirectord.cf and a saru.toml and starts
``saru run -c saru.toml`` in LD1 or LD2; ``keepalived()`` starts a keepalived VRRPv3 peer instead.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

from tests.lab import stop_process
from tests.lab import wait_for as lab_wait_for
from tests.lab.daemon import NIC_FILTER, NsDaemon
from tests.lab.guide import REALS, VIP, VIP6, Topology

T = TypeVar("T")
NAT_GW = "10.77.7.1"
UPSTREAM = "10.77.6.1"
DIRECTORS = {"ld1": "10.77.6.2", "ld2": "10.77.6.3"}

LDIRECTORD_CF = """\
checktimeout=1
checkinterval=1
autoreload=no
quiescent=no
logfile="{log}"

virtual={vip}:80
\treal={fe1}:80 {fwd}
\treal={fe2}:80 {fwd}
\tservice=http
\tscheduler={scheduler}
\tprotocol=tcp
\tchecktype=negotiate
\tcheckport=80
\trequest="haCheker/haCheck.html"
\treceive="up and running"
"""


@contextmanager
def dr_bed(workdir: Path) -> Iterator[HABed]:
    """The guide's topology in direct-routing mode with nginx on FE1 and FE2; torn down on exit."""
    with HABed(workdir) as bed:
        bed.mode("dr")
        bed.nginx("fe1")
        bed.nginx("fe2")
        yield bed


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """``tests.lab.wait_for`` for the HA bed: a director that does not answer yet counts as "not yet"."""
    return lab_wait_for(predicate, timeout, what, interval, tolerate=(OSError, RuntimeError, KeyError, ValueError))


class Director(NsDaemon):
    """One ``saru run`` in a director namespace, reached through its control socket."""

    def __init__(self, bed: HABed, role: str, workdir: Path, proc: subprocess.Popen[str], log: Path) -> None:
        super().__init__(role, workdir, proc, log)
        self.bed = bed

    def ha(self) -> dict[str, Any]:
        ha: dict[str, Any] = self.ask("ha")["ha"]
        return ha

    def state(self) -> str:
        try:
            return str(self.ha()["state"])
        except (OSError, RuntimeError):
            return "unreachable"

    def wait_state(self, state: str, timeout: float = 10) -> dict[str, Any]:
        return wait_for(lambda: (ha := self.ha())["state"] == state and ha, timeout,
                        f"{self.role} becoming {state}")

    def services(self) -> list[Any]:
        table: list[Any] = self.ask("table")["table"]
        return table

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> int:
        """SIGTERM (SIGKILL after 15 s); the exit status."""
        stop_process(self.proc, 15)
        return int(self.proc.returncode)

    def events(self) -> list[str]:
        doc = self.ask("status")
        return [str(e) for e in doc["events"]]



class HABed(Topology):
    """``Topology`` with the VIP owned by the HA node and LD2 a full director."""

    def up(self) -> Self:
        super().up()
        for cidr in (f"{VIP}/24", f"{VIP6}/64", f"{NAT_GW}/24", "fd00:7::1/64"):
            self.ip("ld1", "addr", "del", cidr, "dev", "eth0")
        self.ip("ld2", "route", "add", "default", "via", UPSTREAM)
        self.ip("ld2", "-6", "route", "add", "default", "via", "fd00:6::1")
        self.sysctl("ld2", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                    *(f"net.ipv4.conf.{key}.send_redirects=0" for key in ("all", "default", "eth0")))
        for role in DIRECTORS:  # a real NIC's MAC filter (see NIC_FILTER)
            self.nft(role, NIC_FILTER)
        return self

    def director(self, role: str, *, mode: str = "dr", scheduler: str = "rr", extra_vips: tuple[str, ...] = (),
                 start: bool = True, with_ha: bool = True, api_token: str | None = None, **ha: Any) -> Director:
        """Start ``saru run -c saru.toml`` (nft data plane) in ``role``; ``ha`` overrides ``[ha]`` keys.

        ``start``: wait until VRRP runs; ``with_ha=False``: a saru.toml without ``[ha]`` (table always on);
        ``api_token``: an ``[api]`` on the unix socket ``<workdir>/api.sock`` (reachable from the test's
        namespace: it is a file) with that write token.
        """
        d = self.workdir / f"{role}-{time.monotonic_ns()}"
        d.mkdir(parents=True)
        index = 0 if mode == "nat" else 2
        fwd = "masq" if mode == "nat" else "gate"
        (d / "ldirectord.cf").write_text(LDIRECTORD_CF.format(
            log=d / "ldirectord.log", vip=VIP, fe1=REALS["fe1"][index], fe2=REALS["fe2"][index], fwd=fwd,
            scheduler=scheduler))
        ping = ha.pop("ping", None)
        values: dict[str, Any] = {"interface": "eth0", "vips": [f"{VIP}/24", *extra_vips],
                                  "virtual_router_id": 51, "priority": 100, "advert_interval": 0.1}
        values.update(ha)
        lines = ['[director]', 'config = "ldirectord.cf"', 'dataplane = "nft"', ""]
        if with_ha:
            lines += ["[ha]"] + [f"{key} = {_toml(value)}" for key, value in values.items()]
        if ping and with_ha:
            lines += ["", "[ha.ping]"] + [f"{key} = {_toml(value)}" for key, value in ping.items()]
        if api_token is not None:
            (d / "api.token").write_text(api_token + "\n")
            (d / "api.token").chmod(0o600)
            lines += ["", "[api]", f'listen = "unix:{d / "api.sock"}"', 'token_file = "api.token"']
        (d / "saru.toml").write_text("\n".join(lines) + "\n")
        log = d / "saru.out"
        handle = log.open("w")
        proc = self.python(role, "saru", "run", "-c", str(d / "saru.toml"), "--control", str(d / "saru.sock"),
                           stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        director = Director(self, role, d, proc, log)
        if start:
            wait_for(lambda: proc.poll() is not None or (director.state() != "unreachable"
                     and director.state() != "init"), 20, f"saru in {role} starting VRRP")
            if proc.poll() is not None:
                raise RuntimeError(f"saru in {role} exited {proc.returncode}:\n{director.logtext()}")
        return director

    def curl(self, path: str = "/", timeout: float = 1.0) -> str | None:
        """One GET from the client through the VIP; the body, or None when it failed."""
        got = self.run("cl", "curl", "-s", "-f", "-m", str(timeout), f"http://{VIP}{path}", check=False,
                       timeout=timeout + 5)
        return got.stdout if got.returncode == 0 else None

    def served(self, timeout: float = 10) -> float:
        """Seconds until the client gets an answer through the VIP."""
        start = time.monotonic()
        wait_for(lambda: self.curl(timeout=0.5), timeout, "the client served through the VIP", interval=0.01)
        return time.monotonic() - start

    def vip_on(self, role: str) -> bool:
        out = self.run(role, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
        return f" {VIP}/" in out

    def block_bridge(self, table: str, rule: str) -> None:
        """Drop frames on the bridge (a bridge-family nftables rule in the ``br`` namespace)."""
        self.nft("br", f"add table bridge {table}\n"
                       f"add chain bridge {table} fw {{ type filter hook forward priority 0; }}\n"
                       f"add rule bridge {table} fw {rule} drop\n")

    def unblock_bridge(self, table: str) -> None:
        self.run("br", "nft", "delete", "table", "bridge", table, check=False)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def keepalived_conf(*, state: str, priority: int, vrid: int = 51, interval: float = 0.1, nopreempt: bool = True,
                    vips: tuple[str, ...] = (f"{VIP}/24",)) -> str:
    """keepalived.conf for a VRRPv3 peer of Saru (its own VIP configuration; no LVS part)."""
    addresses = "\n".join(f"        {v} dev eth0" for v in vips)
    return f"""\
global_defs {{
    vrrp_version 3
    script_user root
    enable_script_security
    vrrp_garp_master_delay 0
}}
vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id {vrid}
    priority {priority}
    advert_int {interval}
    {"nopreempt" if nopreempt else ""}
    virtual_ipaddress {{
{addresses}
    }}
}}
"""


def start_keepalived(bed: HABed, role: str, conf: str) -> subprocess.Popen[str]:
    d = bed.workdir / f"keepalived-{role}-{time.monotonic_ns()}"
    d.mkdir(parents=True)
    (d / "keepalived.conf").write_text(conf)
    return bed.popen(role, "keepalived", "-n", "-l", "-G", "-D", "-P", "-f", str(d / "keepalived.conf"),
                     "-p", str(d / "k.pid"), "-r", str(d / "v.pid"),
                     stdout=(d / "out").open("w"), stderr=subprocess.STDOUT)
