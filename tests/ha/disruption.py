"""The disruption suite's beds: a load through one data plane while one fault or operation happens.

``ProxyBed`` is the userspace proxy on loopback (three real nginx servers, ``saru run --dataplane
proxy``). ``NftBed`` is the UltraMonkey guide's network in namespaces ``saru-…`` (``tests.ha.bed.HABed``)
in NAT or direct-routing mode with the nftables plane: ``solo()`` runs one director without ``[ha]``
(the VIP on LD1, put there by the bed), ``pair()`` two Saru directors with VRRP, ``keepalived_pair()``
two keepalived VRRP peers over table-only Saru daemons (keepalived's own ``virtual_server`` needs
IPVS, which only the QEMU guest has).

``measure(bed, name, action)`` runs the bounded client load (``tests.lab.loadgen``) for a lead-in,
calls ``action`` (which returns once the disruption is over, e.g. the restarted daemon is ready),
lets the load run a tail, and returns an ``Outcome``: the load's summary, the data-plane writes the
daemons counted (``runtime``'s ``applies``/``ops_applied``, summed over every daemon that ran, a
restarted one from its start) and, on the nftables plane, the kernel's own count of ruleset
transactions (``nft monitor`` in both director namespaces: what really changed, whoever did it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from saru.control import request_sync
from tests.director import Director as ProxyDirector
from tests.helpers import Nginx, start_nginx
from tests.lab import wait_for
from tests.lab.netns import ROOT, Host

# the beds' daemons keep root (the workdirs are root's, mode 0700), as the test suite's conftest does
os.environ.setdefault("SARU_DROP_PRIVILEGES", "0")
LEAD = 1.0  # seconds of load before the disruption
TAIL = 1.0  # seconds of load after it is over
BIG = 256 * 1024 * 1024  # the downloads' file (sparse)
CHECK_PAGE = "haCheker/haCheck.html"
LOAD_ARGS = ("--conns", "6", "--keepalive", "3", "--downloads", "2", "--download-rate", "2000000")


@dataclass
class Outcome:
    """One row of the table."""

    plane: str
    scenario: str
    load: dict[str, Any]
    writes: int | None = None  # data-plane applies counted by the daemons
    ops: int | None = None  # table operations in them
    kernel_transactions: int | None = None  # nft monitor's "new generation" lines
    note: str = ""

    def row(self) -> dict[str, Any]:
        return {"plane": self.plane, "scenario": self.scenario, "failed": self.load.get("failed"),
                "refused": self.load.get("refused"), "broken": self.load.get("broken_connections"),
                "keepalive_closed": self.load.get("keepalive_closed"), "writes": self.writes, "ops": self.ops,
                "kernel_transactions": self.kernel_transactions, "longest_gap": self.load.get("longest_gap"),
                "ok": self.load.get("ok"), "rate": self.load.get("rate"), "errors": self.load.get("errors"),
                "downloads_done": self.load.get("downloads_done"), "note": self.note,
                "examples": self.load.get("examples", [])[:3]}


class LoadRun:
    """The load generator as a subprocess (in a namespace or here); ``finish()`` returns its summary."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line or not json.loads(line).get("ready"):
            proc.kill()
            raise RuntimeError(f"the load did not get going: {line!r} {proc.stderr.read() if proc.stderr else ''}")

    def finish(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        out, err = self.proc.communicate(timeout=30)
        if self.proc.returncode != 0 or not out.strip():
            raise RuntimeError(f"load generator failed ({self.proc.returncode}): {err[-2000:]}")
        summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return summary


class NftMonitor:
    """``nft monitor`` in one namespace: counts ruleset transactions (``# new generation`` lines)."""

    def __init__(self, host: Host) -> None:
        self.proc = host.popen("nft", "monitor", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.transactions = 0
        self.lines: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                if line.startswith("# new generation"):
                    self.transactions += 1
                elif len(self.lines) < 2000:
                    self.lines.append(line.rstrip())

    def count(self) -> int:
        with self._lock:
            return self.transactions


def runtime(control: Path) -> dict[str, Any] | None:
    """A daemon's ``runtime`` answer, None when it does not answer."""
    try:
        answer = request_sync(control, "runtime", timeout=5)
    except OSError:
        return None
    return answer if answer.get("ok") else None


class WriteCounter:
    """The daemons' apply counters across restarts: ``{pid: (applies, ops)}`` at the start of a scenario."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[int, int]] = {}
        self.base: dict[int, tuple[int, int]] = {}

    def sample(self, controls: list[Path]) -> None:
        for control in controls:
            doc = runtime(control)
            if doc is not None:
                self.seen[doc["pid"]] = (doc["applies"], doc["ops_applied"])

    def start(self, controls: list[Path]) -> None:
        self.sample(controls)
        self.base = dict(self.seen)

    def delta(self, controls: list[Path]) -> tuple[int, int]:
        self.sample(controls)
        applies = sum(a - self.base.get(pid, (0, 0))[0] for pid, (a, _) in self.seen.items())
        ops = sum(o - self.base.get(pid, (0, 0))[1] for pid, (_, o) in self.seen.items())
        return applies, ops


class Bed:
    """What ``measure`` needs of a bed."""

    plane = ""
    counter: WriteCounter

    def controls(self) -> list[Path]:
        raise NotImplementedError

    def load(self, *args: str) -> LoadRun:
        raise NotImplementedError

    def monitors(self) -> list[NftMonitor]:
        return []

    def up(self) -> Self:
        raise NotImplementedError

    def down(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(self, *exc: object) -> None:
        self.down()


def measure(bed: Bed, scenario: str, action: Callable[[], str | None], *, lead: float = LEAD, tail: float = TAIL,
            load_args: tuple[str, ...] = LOAD_ARGS) -> Outcome:
    """Load, lead-in, ``action()`` (its return value is the row's note), tail; see the module docstring."""
    bed.counter.start(bed.controls())
    kernel_before = [m.count() for m in bed.monitors()]
    run = bed.load(*load_args)
    note: str | None = ""
    try:
        time.sleep(lead)  # the load's lead-in (a measured stretch, not synchronisation)
        note = action()
        bed.counter.sample(bed.controls())
        time.sleep(tail)
    finally:
        summary = run.finish()
    applies, ops = bed.counter.delta(bed.controls())
    kernel = None
    if bed.monitors():
        time.sleep(0.2)  # nft monitor's last lines
        kernel = sum(m.count() - before for m, before in zip(bed.monitors(), kernel_before, strict=True))
    return Outcome(bed.plane, scenario, summary, applies, ops, kernel, note or "")


# ---- helpers shared by the beds ----------------------------------------------------------------


def flap_file(path: Path, seconds: float, period: float = 1.0) -> str:
    """Remove and restore ``path`` every ``period`` (the real's check page: its check fails, then passes)."""
    content = path.read_text()
    end = time.monotonic() + seconds
    flips = 0
    try:
        while time.monotonic() < end:
            path.unlink()
            flips += 1
            time.sleep(period)  # the fault's own rhythm
            path.write_text(content)
            time.sleep(period)
    finally:
        path.write_text(content)
    return f"check page removed/restored {flips}x at {period:g} s"


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def children(pid: int) -> list[int]:
    """``pid`` and its direct children (an nginx master and its workers)."""
    found = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def freeze(pids: list[int], seconds: float) -> str:
    """SIGSTOP ``pids`` for ``seconds`` (a hung real: connections are accepted by the kernel, never
    answered), then SIGCONT."""
    signal_all(pids, signal.SIGSTOP)
    try:
        time.sleep(seconds)  # how long the real stays hung
    finally:
        signal_all(pids, signal.SIGCONT)
    return f"real frozen (SIGSTOP) {seconds:g} s"


SLOW = "    limit_rate 8k;\n    limit_rate_after 0;\n"
PAGE = "x" * 8191 + "\n"  # the index page: 8 KiB, about 1 s at the slow real's rate


def nginx_slow(conf: Path, master: int, slow: bool) -> None:
    """Make an nginx answer slowly (``limit_rate``, an nginx reload) or normally again."""
    text = conf.read_text().replace(SLOW, "")
    if slow:
        text = text.replace("    access_log off;\n", "    access_log off;\n" + SLOW)
    conf.write_text(text)
    signal_all([master], signal.SIGHUP)


# ---- the proxy plane on loopback ---------------------------------------------------------------

PROXY_CF = """\
checktimeout=1
checkinterval=1
autoreload=no
quiescent=no

virtual=127.0.0.1:{vport}
{reals}\tservice=http
\tscheduler=rr
\tprotocol=tcp
\tchecktype=negotiate
\trequest="{check}"
\treceive="up and running"
"""


class ProxyBed(Bed):
    """``saru run --dataplane proxy`` in front of three nginx on 127.0.0.1 (the third one only in the
    table while the reload scenario adds it)."""

    plane = "proxy"

    def __init__(self, workdir: Path, vport: int) -> None:
        self.workdir = workdir
        self.vport = vport
        self.counter = WriteCounter()
        self.reals: list[Nginx] = []
        self.director: ProxyDirector | None = None

    def up(self) -> Self:
        for name in ("rs1", "rs2", "rs3"):
            server = start_nginx(self.workdir / name, name, files={"index.html": PAGE,
                                                                  CHECK_PAGE: "up and running\n"})
            with (server.root / "big.bin").open("wb") as handle:
                handle.truncate(BIG)
            self.reals.append(server)
        self.start()
        return self

    def config(self, reals: int = 2, broken: bool = False) -> str:
        lines = "".join(f"\treal=127.0.0.1:{r.port} masq\n" for r in self.reals[:reals])
        text = PROXY_CF.format(vport=self.vport, reals=lines, check=CHECK_PAGE)
        return text + ("\tthis is not a directive\n" if broken else "")

    def start(self, *args: str) -> None:
        d = ProxyDirector(self.workdir, self.config(), extra_args=args)
        self.director = d
        d.wait_ready()
        wait_for(lambda: all(s == "up" for s, _ in d.real_states().values()), 15, "both reals up")

    def down(self) -> None:
        if self.director is not None:
            self.director.stop()
        for server in self.reals:
            signal_all(children(server.process.pid) if server.process else [], signal.SIGCONT)
            server.stop()

    def controls(self) -> list[Path]:
        return [self.workdir / "control.sock"]

    def load(self, *args: str) -> LoadRun:
        return LoadRun(subprocess.Popen(
            [sys.executable, "-m", "tests.lab.loadgen", "127.0.0.1", str(self.vport), *args],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))

    # -- the scenarios' actions --------------------------------------------------------------------

    def reload(self, text: str) -> dict[str, Any]:
        assert self.director is not None
        self.director.config.write_text(text)
        return self.director.command("reload")

    def reload_same(self) -> str:
        answer = self.reload(self.config())
        return f"reloaded: {answer.get('reloaded')}"

    def reload_change(self) -> str:
        assert self.director is not None
        d = self.director
        self.reload(self.config(reals=3))
        wait_for(lambda: len(d.real_states()) == 3 and all(s == "up" for s, _ in d.real_states().values()), 15,
                 "the third real in the table")
        time.sleep(1.0)  # the load uses the bigger pool for a while
        self.reload(self.config(reals=2))
        wait_for(lambda: len(d.real_states()) == 2, 15, "the third real gone")
        return "added a third real, 1 s later removed it"

    def reload_broken(self) -> str:
        answer = self.reload(self.config(broken=True))
        self.reload(self.config())
        return f"broken file refused: {answer.get('reloaded') is False}"

    def flap(self) -> str:
        return flap_file(self.reals[1].root / CHECK_PAGE, 5.0)

    def hung(self) -> str:
        server = self.reals[1]
        assert server.process is not None
        return freeze(children(server.process.pid), 4.0)

    def slow(self) -> str:
        server = self.reals[1]
        assert server.process is not None
        nginx_slow(server.directory / "nginx.conf", server.process.pid, True)
        try:
            time.sleep(4.0)  # the real stays slow for this long
        finally:
            nginx_slow(server.directory / "nginx.conf", server.process.pid, False)
        return "real slow (nginx limit_rate 8k: ~1 s an answer) 4 s"

    def kill9_restart(self) -> str:
        assert self.director is not None
        self.director.process.kill()
        self.director.process.wait(5)
        self.start()
        return "saru run SIGKILLed, started again"

    def graceful_restart(self) -> str:
        assert self.director is not None
        self.director.stop()
        self.start()
        return "saru run SIGTERMed, started again"

    def handover_restart(self) -> str:
        """``saru run --handover``: the new daemon takes the running one's listening sockets, then it stops."""
        assert self.director is not None
        old = self.director
        # the old daemon is our child: reap it as soon as it exits (a zombie still looks alive to the new one)
        threading.Thread(target=old.process.wait, daemon=True).start()
        self.start("--handover")
        old.process.wait(15)
        return f"saru run --handover (old daemon exited {old.process.returncode})"


def proxy_bed(workdir: Path, vport: int) -> ProxyBed:
    """``with proxy_bed(…) as bed:`` — up on entry, down on exit (and when ``up`` fails)."""
    return ProxyBed(workdir, vport)


PROXY_SCENARIOS: dict[str, Callable[[ProxyBed], str]] = {
    "baseline (nothing happens)": lambda bed: "",
    "reload, nothing changed": ProxyBed.reload_same,
    "reload adding/removing a real": ProxyBed.reload_change,
    "reload with a broken file": ProxyBed.reload_broken,
    "a real's check flapping every 1 s": ProxyBed.flap,
    "a real hung (SIGSTOP 4 s)": ProxyBed.hung,
    "a real answering slowly": ProxyBed.slow,
    "kill -9 and restart (adoption)": ProxyBed.kill9_restart,
    "graceful restart": ProxyBed.graceful_restart,
    "graceful restart, --handover": ProxyBed.handover_restart,
}


# ---- the nftables plane in the guide's network ---------------------------------------------------

EXTRA_REAL = {"nat": "10.77.7.21", "dr": "10.77.6.21"}  # a second address of FE1: the real a reload adds


def netns_pids(host: Host) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def nginx_master(pids: list[int]) -> int:
    """The nginx master among ``pids`` (the one whose parent is not one of them)."""
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) not in pids:
                return pid
    raise RuntimeError(f"no nginx master among {pids}")


class NftBed(Bed):
    """The guide's network (``HABed``) in ``mode`` ("nat" or "dr") with nginx on FE1 and FE2."""

    def __init__(self, workdir: Path, mode: str) -> None:
        from tests.ha.bed import HABed

        self.mode = mode
        self.lab = HABed(workdir)
        self.workdir = workdir
        self.counter = WriteCounter()
        self.directors: dict[str, Any] = {}
        self.keepalived: dict[str, subprocess.Popen[str]] = {}
        self._monitors: list[NftMonitor] = []
        self.ha_options: dict[str, Any] = {}
        self.kind = ""
        self.plane = f"nft {mode}"

    @property
    def vips(self) -> tuple[str, ...]:
        from tests.ha.bed import NAT_GW
        from tests.lab.guide import VIP

        return (f"{VIP}/24", f"{NAT_GW}/24") if self.mode == "nat" else (f"{VIP}/24",)

    def up(self) -> Self:
        self.lab.up()
        self.lab.mode(self.mode)
        for role in ("fe1", "fe2"):
            root = self.lab.nginx(role)
            (root / "index.html").write_text(PAGE)
            with (root / "big.bin").open("wb") as handle:
                handle.truncate(BIG)
        self.lab.add_address("fe1", f"{EXTRA_REAL[self.mode]}/24")
        self._monitors = [NftMonitor(self.lab[role]) for role in ("ld1", "ld2")]
        return self

    def down(self) -> None:
        for pid in netns_pids(self.lab["fe2"]):
            signal_all([pid], signal.SIGCONT)
        self.stop_all()
        self.lab.down()

    def stop_all(self) -> None:
        for proc in self.keepalived.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        self.keepalived.clear()
        for d in self.directors.values():
            d.stop()
        self.directors.clear()
        for role in ("ld1", "ld2"):
            self.lab.run("br", "ip", "link", "set", f"p-{role}", "up", check=False)
            for cidr in self.vips:
                self.lab.run(role, "ip", "addr", "del", cidr, "dev", "eth0", check=False)
            if self.kind in ("pair", "keepalived") and self.mode == "nat":
                self.lab.run(role, "ip", "route", "del", "10.77.7.0/24", "dev", "eth0", check=False)
            for table in ("netdev saru", "ip saru", "ip6 saru", "inet saru"):
                self.lab.run(role, "nft", "delete", "table", *table.split(), check=False)

    def monitors(self) -> list[NftMonitor]:
        return self._monitors

    def controls(self) -> list[Path]:
        return [d.control for d in self.directors.values() if d.proc.poll() is None]

    def load(self, *args: str) -> LoadRun:
        from tests.lab.guide import VIP

        return LoadRun(self.lab.popen("cl", sys.executable, "-m", "tests.lab.loadgen", VIP, "80", *args,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE))

    def _served(self) -> None:
        self.lab.served(15)

    def _director(self, role: str, **kwargs: Any) -> Any:
        d = self.lab.director(role, mode=self.mode, **kwargs)
        self.directors[role] = d
        return d

    def _wait_table(self, d: Any) -> None:
        def ready() -> bool:
            health = self._health(d)
            return len(health) >= 2 and all(health.values())
        from tests.ha.bed import wait_for as ha_wait
        ha_wait(ready, 20, f"the director in {d.role} ready with every real up")

    @staticmethod
    def _health(d: Any) -> dict[str, bool]:
        """``{"ADDR:PORT": up}`` from ``table`` (not ``status``: its counters read conntrack, which takes
        seconds to minutes under thousands of new NAT connections a second — see docs/reliability.md)."""
        return {f"{h['address']}:{h['port']}": bool(h["up"]) for h in d.ask("table")["health"]}

    def _on_link_reals(self) -> None:
        """NAT: both directors reach the reals' network on their own link, as directors cabled to it do
        (only the gateway address floats); without it the backup would send the reals' packets back to
        the router, which sends them back — a loop."""
        if self.mode == "nat":
            for role in ("ld1", "ld2"):
                self.lab.ip(role, "route", "replace", "10.77.7.0/24", "dev", "eth0")

    # -- the three set-ups --------------------------------------------------------------------------

    def solo(self) -> None:
        """One director without ``[ha]`` on LD1; the VIP (and NAT gateway) put on LD1 by the bed."""
        self.stop_all()
        self.kind = "solo"
        for cidr in self.vips:
            self.lab.ip("ld1", "addr", "add", cidr, "dev", "eth0")
        self._wait_table(self._director("ld1", with_ha=False, start=False))
        self._served()

    def pair(self, warm_standby: bool = False) -> None:
        """Two Saru directors with VRRP (Saru's defaults: advert 0.1 s; ``warm_standby`` as given); LD1 master."""
        self.stop_all()
        self.kind = "pair"
        self._on_link_reals()
        self.ha_options = {"extra_vips": self.vips[1:], "warm_standby": warm_standby}
        self._director("ld1", **self.ha_options).wait_state("master")
        self._director("ld2", **self.ha_options).wait_state("backup")
        self._served()

    def keepalived_pair(self) -> None:
        """keepalived 2 VRRP (its defaults: VRRPv2, advert 1 s) moving the VIP; a table-only Saru on each."""
        from tests.ha.bed import keepalived_conf, start_keepalived
        from tests.ha.bed import wait_for as ha_wait

        self.stop_all()
        self.kind = "keepalived"
        self._on_link_reals()
        conf = keepalived_conf(state="BACKUP", priority=100, interval=1, nopreempt=False, vips=self.vips)
        conf = self.keepalived_conf = conf.replace("    vrrp_version 3\n", "")  # its default: VRRPv2
        self.keepalived["ld1"] = start_keepalived(self.lab, "ld1", conf)
        ha_wait(lambda: self.lab.vip_on("ld1"), 15, "keepalived master on ld1")
        self.keepalived["ld2"] = start_keepalived(self.lab, "ld2", conf)
        for role in ("ld1", "ld2"):
            self._wait_table(self._director(role, with_ha=False, start=False))
        time.sleep(2.0)  # keepalived has no state query: let ld2 settle as backup
        self._served()

    # -- actions of the solo director ----------------------------------------------------------------

    @property
    def solo_director(self) -> Any:
        return self.directors["ld1"]

    def _cf(self) -> Path:
        return Path(self.solo_director.workdir) / "ldirectord.cf"

    def _reload(self) -> dict[str, Any]:
        return dict(self.solo_director.ask("reload"))

    def reload_same(self) -> str:
        self._cf().write_text(self._cf().read_text())
        return f"reloaded: {self._reload().get('reloaded')}"

    def reload_change(self) -> str:
        from tests.ha.bed import wait_for as ha_wait

        cf = self._cf()
        original = cf.read_text()
        fwd = "masq" if self.mode == "nat" else "gate"
        head, sep, tail = original.partition("\tservice=http")
        cf.write_text(f"{head}\treal={EXTRA_REAL[self.mode]}:80 {fwd}\n{sep}{tail}")
        self._reload()
        d = self.solo_director
        ha_wait(lambda: sum(self._health(d).values()) == 3, 15, "the third real up")
        time.sleep(1.0)  # the load uses the bigger pool for a while
        cf.write_text(original)
        self._reload()
        ha_wait(lambda: len(self._health(d)) == 2, 15, "the third real gone")
        return "added a third real, 1 s later removed it"

    def reload_broken(self) -> str:
        cf = self._cf()
        original = cf.read_text()
        cf.write_text(original + "\tthis is not a directive\n")
        answer = self._reload()
        cf.write_text(original)
        self._reload()
        return f"broken file refused: {answer.get('reloaded') is False}"

    def flap(self) -> str:
        return flap_file(self.workdir / "nginx-fe2" / "root" / CHECK_PAGE, 5.0)

    def hung(self) -> str:
        return freeze(netns_pids(self.lab["fe2"]), 4.0)

    def slow(self) -> str:
        conf = self.workdir / "nginx-fe2" / "nginx.conf"
        master = nginx_master(netns_pids(self.lab["fe2"]))
        nginx_slow(conf, master, True)
        try:
            time.sleep(4.0)  # the real stays slow for this long
        finally:
            nginx_slow(conf, master, False)
        return "real slow (nginx limit_rate 8k: ~1 s an answer) 4 s"

    def kill9_restart(self) -> str:
        self.solo_director.kill9()
        self._wait_table(self._director("ld1", with_ha=False, start=False))
        return "saru run SIGKILLed, started again"

    def graceful_restart(self) -> str:
        self.solo_director.stop()
        self._wait_table(self._director("ld1", with_ha=False, start=False))
        return "saru run SIGTERMed, started again"

    def graceful_restart_keeping_table(self) -> str:
        """``cleanstop=no`` (reloaded in: no write), SIGTERM, started again: the table outlives the daemon."""
        cf = self._cf()
        cf.write_text("cleanstop=no\n" + cf.read_text())
        answer = self._reload()
        self.solo_director.stop()
        self._wait_table(self._director("ld1", with_ha=False, start=False))
        return f"cleanstop=no reloaded ({answer.get('reloaded')}), SIGTERMed, started again"

    # -- actions of a pair (Saru's VRRP or keepalived's) ----------------------------------------------

    def master(self) -> str:
        if self.kind == "keepalived":
            return "ld1" if self.lab.vip_on("ld1") and self.keepalived["ld1"].poll() is None else "ld2"
        return next(r for r, d in self.directors.items() if d.state() == "master")

    def _wait_master(self, role: str, timeout: float = 15) -> None:
        from tests.ha.bed import wait_for as ha_wait

        if self.kind == "keepalived":
            ha_wait(lambda: self.lab.vip_on(role), timeout, f"the VIP on {role}")
        else:
            self.directors[role].wait_state("master", timeout)

    def planned(self) -> str:
        master = self.master()
        other = "ld2" if master == "ld1" else "ld1"
        self.directors[master].ask("ha-resign")
        self._wait_master(other)
        time.sleep(1.0)  # the load runs on the new master for a while
        self.directors[master].ask("ha-takeover")  # and back: the resign's hold does not outlive the scenario
        self._wait_master(master)
        return f"{master} resigned, {other} master; 1 s later {master} took it back"

    def unplanned(self) -> str:
        master = self.master()
        other = "ld2" if master == "ld1" else "ld1"
        self.lab.run("br", "ip", "link", "set", f"p-{master}", "down")
        if self.kind == "keepalived":
            self.keepalived[master].kill()
            self.keepalived[master].wait(5)
        else:
            self.directors[master].kill9()
        self._wait_master(other)
        for cidr in self.vips:  # a node that died does not come back with its addresses
            self.lab.run(master, "ip", "addr", "del", cidr, "dev", "eth0", check=False)
        self.lab.run("br", "ip", "link", "set", f"p-{master}", "up")
        if self.kind == "keepalived":
            from tests.ha.bed import start_keepalived

            self.keepalived[master] = start_keepalived(self.lab, master, self.keepalived_conf)
            time.sleep(2.0)  # keepalived has no state query: it starts as backup
        else:
            self._director(master, **self.ha_options).wait_state("backup")
        return f"{master}: link down + kill -9; {other} took over; {master} back as backup"

    def link_flap(self) -> str:
        master = self.master()
        for _ in range(3):
            self.lab.run("br", "ip", "link", "set", f"p-{master}", "down")
            time.sleep(1.0)  # the flap's rhythm
            self.lab.run("br", "ip", "link", "set", f"p-{master}", "up")
            time.sleep(1.0)
        from tests.ha.bed import wait_for as ha_wait

        if self.kind == "keepalived":
            ha_wait(lambda: self.lab.vip_on("ld1") != self.lab.vip_on("ld2"), 15, "one VIP owner")
        else:
            ha_wait(lambda: sorted(d.state() for d in self.directors.values()) == ["backup", "master"], 15,
                    "one master, one backup")
        return f"{master}'s link down 1 s / up 1 s, 3 times"

    def keepalived_reload(self) -> str:
        master = self.master()
        self.keepalived[master].send_signal(signal.SIGHUP)
        time.sleep(2.0)  # keepalived's reload has no completion signal
        return f"SIGHUP to keepalived on {master}"

    def keepalived_restart(self, sig: int) -> str:
        from tests.ha.bed import start_keepalived

        master = self.master()
        proc = self.keepalived[master]
        proc.send_signal(sig)
        proc.wait(10)
        self.keepalived[master] = start_keepalived(self.lab, master, self.keepalived_conf)
        time.sleep(2.0)  # no state query: let it settle
        return f"keepalived on {master} {signal.Signals(sig).name}, started again"


SOLO_SCENARIOS: dict[str, Callable[[NftBed], str]] = {
    "baseline (nothing happens)": lambda bed: "",
    "reload, nothing changed": NftBed.reload_same,
    "reload adding/removing a real": NftBed.reload_change,
    "reload with a broken file": NftBed.reload_broken,
    "a real's check flapping every 1 s": NftBed.flap,
    "a real hung (SIGSTOP 4 s)": NftBed.hung,
    "a real answering slowly": NftBed.slow,
    "kill -9 and restart (adoption)": NftBed.kill9_restart,
    "graceful restart": NftBed.graceful_restart,
    "graceful restart, cleanstop=no": NftBed.graceful_restart_keeping_table,
}
PAIR_SCENARIOS: dict[str, Callable[[NftBed], str]] = {
    "planned switchover": NftBed.planned,
    "unplanned switchover (kill -9 master)": NftBed.unplanned,
    "VRRP link flapping": NftBed.link_flap,
}
KEEPALIVED_SCENARIOS: dict[str, Callable[[NftBed], str]] = {
    "reload, nothing changed": NftBed.keepalived_reload,
    "kill -9 and restart (adoption)": lambda bed: bed.keepalived_restart(signal.SIGKILL),
    "graceful restart": lambda bed: bed.keepalived_restart(signal.SIGTERM),
    "unplanned switchover (kill -9 master)": NftBed.unplanned,
    "VRRP link flapping": NftBed.link_flap,
}


def nft_bed(workdir: Path, mode: str) -> NftBed:
    """``with nft_bed(…) as bed:`` — up on entry, down on exit (and when ``up`` fails)."""
    return NftBed(workdir, mode)
