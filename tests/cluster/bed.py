"""A real two-node Pacemaker/Corosync cluster in network namespaces: the guide's directors, for the tests.

A ``tests.lab.Lab``: every machine is a network namespace named ``saru-c<pid>x<n>-<role>``, the bridge
lives in ``sw``, nothing is created in the root namespace. The two cluster
nodes also get their own mount, UTS and PID namespaces (``node_init.sh`` is their PID 1): libqb's IPC
sockets are abstract (scoped by network namespace) and its ring buffers live in ``/dev/shm``, the
agents keep state in ``/run``, crmsh names "this node" after ``uname -n`` — see
research/pcmk/REPORT.md for the 17 pitfalls this avoids. The repository's ``ocf/`` is overlaid on
``/usr/lib/ocf/resource.d`` inside the nodes only.

```
 cl   172.16.8.10/24 (gw rt)                     the client
 rt   172.16.8.1 + 10.77.8.1                      the upstream router (the ping target)
 n1   10.77.8.2  node1 ┐ corosync (knet, token 1000 ms) + pacemaker; the VIP 10.77.8.240
 n2   10.77.8.3  node2 ┘ is the cluster's (IPaddr2)
 fe1  10.77.8.11 ┐ nginx :80 (/haCheker/haCheck.html = "up and running"), the VIP on lo,
 fe2  10.77.8.12 ┘ arp_ignore=1 / arp_announce=2: direct routing, as in the guide
```
All hang off bridge ``lan`` (one L2 segment). ``down()`` powers the nodes off, then kills every process
of the lab and deletes every namespace, also after a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, TypeVar

from tests.helpers import process_gone
from tests.lab import Lab, can_build, checked, signal_pid, start_nginx_site, wait_for

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NODE_INIT = HERE / "node_init.sh"
VIP = "10.77.8.240"
GATEWAY = "10.77.8.1"
CLIENT = "172.16.8.10"
REALS = {"fe1": "10.77.8.11", "fe2": "10.77.8.12"}
NODES = {"node1": ("n1", "10.77.8.2"), "node2": ("n2", "10.77.8.3")}
ROLES = ("sw", "cl", "rt", "n1", "n2", "fe1", "fe2")
TOOLS = ("ip", "unshare", "nsenter", "corosync", "corosync-keygen", "pacemakerd", "crm", "crm_mon",
         "crm_verify", "cibadmin", "crm_attribute", "nginx", "curl")
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
#: the OCF providers overlaid in the nodes: the repository's ``ocf/`` (SARU_CLUSTER_OCF: another tree)
OCF_DIR = Path(os.environ.get("SARU_CLUSTER_OCF") or ROOT / "ocf")
T = TypeVar("T")

COROSYNC_CONF = """\
totem {{
    version: 2
    cluster_name: {name}
    transport: knet
    token: {token}
    crypto_cipher: aes256
    crypto_hash: sha256
}}
nodelist {{
{nodes}}}
quorum {{
    provider: corosync_votequorum
    two_node: 1
}}
logging {{
    to_logfile: yes
    logfile: /var/log/corosync/corosync.log
    to_stderr: no
    to_syslog: no
    timestamp: hires
}}
"""


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """``tests.lab.wait_for`` at the cluster's pace (each look is a ``crm_mon`` or a ``curl``)."""
    return wait_for(predicate, timeout, what, interval)


@dataclass
class Node:
    """One cluster node: its name, namespace role, address, state directory and PID-1 process."""

    name: str
    role: str
    address: str
    state: Path
    launcher: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    init_pid: int | None = None


class ClusterBed(Lab):
    """The namespaces, the two real servers and the two cluster nodes of one test module."""

    roles = ROLES
    tag = "c"
    env = {"PATH": PATH}
    cwd = None
    timeout = 30

    def __init__(self, workdir: Path, token_ms: int = 1000, dc_deadtime: str = "2s",
                 ocf_dir: Path | None = OCF_DIR) -> None:
        super().__init__()
        self.workdir = workdir
        self.token_ms = token_ms
        self.dc_deadtime = dc_deadtime
        self.ocf_dir = ocf_dir if ocf_dir is not None and ocf_dir.is_dir() else None
        self.nodes = {name: Node(name, role, addr, workdir / name) for name, (role, addr) in NODES.items()}
        self.timings: dict[str, float] = {}

    @staticmethod
    def available() -> tuple[bool, str]:
        """Whether this machine can run the lab (root, the cluster packages, network namespaces)."""
        for agent in ("heartbeat/IPaddr2", "pacemaker/ping", "heartbeat/ldirectord"):
            if not os.access(f"/usr/lib/ocf/resource.d/{agent}", os.X_OK):
                return False, f"OCF agent {agent} is missing (resource-agents, pacemaker-resource-agents)"
        return can_build(*TOOLS, what="the cluster lab (network, mount and PID namespaces)", path=PATH,
                         hint=" (make deps installs pacemaker, corosync, crmsh, nginx)")

    # -- plumbing ---------------------------------------------------------------------------------

    def node_run(self, name: str, *argv: str, check: bool = True,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command inside node ``name`` (its network, mount, UTS and PID namespaces); ``run`` runs one
        in the node's network namespace only, outside its private mounts."""
        pid = self.nodes[name].init_pid
        if pid is None:
            raise RuntimeError(f"{name} is not running")
        proc = subprocess.run(["nsenter", "-t", str(pid), "-m", "-u", "-n", "-p", "--",
                               "env", f"PATH={PATH}", *argv],
                              capture_output=True, text=True, timeout=timeout, check=False)
        return checked(proc, name, argv) if check else proc

    # -- building ---------------------------------------------------------------------------------

    def up(self) -> Self:
        t0 = time.monotonic()
        self._network()
        self._reals()
        self._node_state()
        for name in self.nodes:
            self.start_node(name)
        wait_until(self.formed, 120, "both nodes online with a DC")
        self.timings["formation"] = time.monotonic() - t0
        return self

    def _network(self) -> None:
        super().up()
        self.bridge("sw", "lan", "forward_delay", "0", "stp_state", "0")
        for role in ROLES[1:]:
            self.plug(role, "sw", "lan", f"p-{role}")
            self.sysctl(role, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
                        "net.ipv4.conf.all.arp_accept=1")
        self.add_address("cl", f"{CLIENT}/24")
        self.ip("cl", "route", "add", "default", "via", "172.16.8.1")
        self.add_address("rt", "172.16.8.1/24", f"{GATEWAY}/24")
        self.sysctl("rt", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                    "net.ipv4.conf.eth0.send_redirects=0", "net.ipv4.conf.default.send_redirects=0")
        for node in self.nodes.values():  # the address itself is set by node_init.sh at every boot
            self.sysctl(node.role, "net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                        "net.ipv4.conf.eth0.send_redirects=0")

    def _reals(self) -> None:
        for role, addr in REALS.items():
            self.add_address(role, f"{addr}/24")
            self.ip(role, "addr", "add", f"{VIP}/32", "dev", "lo")
            self.sysctl(role, "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.eth0.arp_ignore=1",
                        "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.eth0.arp_announce=2")
            self.ip(role, "route", "add", "default", "via", GATEWAY)
            start_nginx_site(self[role], self.workdir)

    def _node_state(self) -> None:
        key = self.workdir / "authkey"
        subprocess.run(["corosync-keygen", "-k", str(key)], check=True, capture_output=True)
        seed = self.workdir / "seed-cib.xml"
        seed.write_text(subprocess.run(["cibadmin", "--empty"], check=True, capture_output=True,
                                       text=True).stdout)
        # only the start-up speed is seeded (pacemaker's dc-deadtime default of 20 s dominates
        # formation); stonith, quorum and stickiness come from the configuration under test
        subprocess.run(["crm_attribute", "--type", "crm_config", "--name", "dc-deadtime", "--update",
                        self.dc_deadtime], check=True, capture_output=True, env={**os.environ, "CIB_file": str(seed)})
        nodes = "".join(f"    node {{\n        ring0_addr: {n.address}\n        name: {n.name}\n"
                        f"        nodeid: {i}\n    }}\n" for i, n in enumerate(self.nodes.values(), 1))
        conf = COROSYNC_CONF.format(name=f"saru{self.id}", token=self.token_ms, nodes=nodes)
        hosts = "127.0.0.1\tlocalhost\n" + "".join(f"{n.address}\t{n.name}\n" for n in self.nodes.values())
        for node in self.nodes.values():
            d = node.state
            for sub in ("etc-corosync", "var-lib-corosync", "var-log-corosync", "var-log-pacemaker",
                        "var-lib-pacemaker/cib", "var-lib-pacemaker/pengine", "var-lib-pacemaker/blackbox",
                        "var-lib-pacemaker/cores"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(seed, d / "var-lib-pacemaker/cib/cib.xml")
            os.chmod(d / "var-lib-pacemaker/cib/cib.xml", 0o600)
            shutil.copyfile(key, d / "etc-corosync/authkey")
            os.chmod(d / "etc-corosync/authkey", 0o400)
            (d / "etc-corosync/corosync.conf").write_text(conf)
            (d / "etc-hosts").write_text(hosts)
            for sub in ("var-lib-pacemaker", "var-log-pacemaker"):
                for path in [d / sub, *(d / sub).rglob("*")]:
                    shutil.chown(path, "hacluster", "haclient")
            for sub in ("cib", "pengine", "blackbox", "cores"):
                os.chmod(d / "var-lib-pacemaker" / sub, 0o750)
            os.chmod(d / "var-log-pacemaker", 0o770)

    # -- nodes ------------------------------------------------------------------------------------

    def start_node(self, name: str) -> None:
        """Boot ``name``: a new PID/mount/UTS namespace in its network namespace, node_init.sh as PID 1."""
        node = self.nodes[name]
        if node.init_pid is not None and not process_gone(node.init_pid):
            raise RuntimeError(f"{name} is already running")
        argv = ["ip", "netns", "exec", self[node.role].netns, "unshare", "-m", "-u", "-p", "-f",
                "--propagation", "private", "--mount-proc", "bash", str(NODE_INIT), str(node.state), name,
                f"{node.address}/24", GATEWAY, str(self.ocf_dir or "")]
        node.launcher = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True,
                                         env={**os.environ, "PATH": PATH})
        launcher = node.launcher.pid
        mine = os.readlink("/proc/self/ns/mnt")

        def init() -> int | None:
            for child in _children(launcher):
                if _ns_pid(child) == 1 and "node_init.sh" in _cmdline(child):
                    try:
                        if os.readlink(f"/proc/{child}/ns/mnt") != mine:
                            return child
                    except OSError:
                        return None
            return None

        node.init_pid = wait_until(init, 10, f"{name}'s init process", interval=0.02)
        wait_until(lambda: (node.state / "var-log-corosync").exists() and self._ready(name), 30,
                   f"{name} corosync and pacemakerd started", interval=0.05)

    def _ready(self, name: str) -> bool:
        return self.node_run(name, "test", "-e", "/run/node-init.ready", check=False).returncode == 0

    def crash_node(self, name: str) -> None:
        """Power cut: SIGKILL the node's PID 1 (the kernel kills the whole node) and its NIC goes down."""
        node = self.nodes[name]
        if node.init_pid is not None:
            signal_pid(node.init_pid, signal.SIGKILL)
        self.ip(node.role, "link", "set", "eth0", "down")
        self._reap(node)

    def _reap(self, node: Node) -> None:
        if node.launcher is not None:
            try:
                node.launcher.wait(15)
            except subprocess.TimeoutExpired:
                node.launcher.kill()
                node.launcher.wait(5)
        node.launcher = None
        node.init_pid = None

    def alive(self) -> list[str]:
        return [n.name for n in self.nodes.values() if n.init_pid is not None and not process_gone(n.init_pid)]

    # -- looking ----------------------------------------------------------------------------------

    def crm_mon(self, name: str | None = None) -> ET.Element | None:
        """``crm_mon --output-as=xml`` as seen by ``name`` (default: the first live node), None if it fails."""
        name = name or self.alive()[0]
        got = self.node_run(name, "crm_mon", "-1", "--output-as=xml", check=False, timeout=20)
        if got.returncode != 0:
            return None
        try:
            return ET.fromstring(got.stdout)
        except ET.ParseError:
            return None

    def online(self, name: str | None = None) -> list[str]:
        mon = self.crm_mon(name)
        if mon is None:
            return []
        return sorted(n.get("name", "") for n in mon.iter("node")
                      if n.get("online") == "true" and n.get("standby") != "true" and n.get("type") == "member")

    def formed(self) -> bool:
        mon = self.crm_mon()
        if mon is None:
            return False
        dc = mon.find("./summary/current_dc")
        return self.online() == sorted(self.nodes) and dc is not None and dc.get("present") == "true"

    def resources(self, name: str | None = None) -> dict[str, list[str]]:
        """Resource id → nodes where it is started (clone instances merged), as ``name`` sees it."""
        mon = self.crm_mon(name)
        out: dict[str, list[str]] = {}
        if mon is None:
            return out
        for rsc in mon.iter("resource"):
            started = rsc.get("active") == "true" and rsc.get("role") == "Started"
            nodes = [n.get("name", "") for n in rsc.findall("node")] if started else []
            if rsc.get("failed") == "true":
                nodes = [f"{n}!failed" for n in nodes]
            out.setdefault(rsc.get("id", ""), []).extend(nodes)
        return out

    def vip_on(self) -> list[str]:
        """The nodes whose eth0 is up and holds the VIP (the kernel's view, not the cluster's).

        A crashed node keeps its addresses on a downed NIC (it answers nothing), so it does not count."""
        holders = []
        for node in self.nodes.values():
            got = self.run(node.role, "ip", "-j", "-4", "addr", "show", "dev", "eth0", check=False)
            links = json.loads(got.stdout or "[]") if got.returncode == 0 else []
            if any(a.get("local") == VIP for link in links if "UP" in link.get("flags", [])
                   for a in link.get("addr_info", [])):
                holders.append(node.name)
        return holders

    def client_get(self, path: str = "/", timeout: float = 2) -> str | None:
        """The body the client gets from http://VIP/path, or None."""
        got = self.run("cl", "curl", "-sf", "-m", str(timeout), f"http://{VIP}{path}", check=False,
                       timeout=timeout + 5)
        return got.stdout if got.returncode == 0 else None

    def log(self, name: str, which: str = "pacemaker") -> str:
        path = self.nodes[name].state / (f"var-log-{which}") / f"{which}.log"
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    # -- teardown ---------------------------------------------------------------------------------

    def keep_logs(self) -> None:
        """Opt-in: copy each node's pacemaker.log and corosync.log to ``$SARU_CLUSTER_KEEP_LOGS/<node>/``."""
        keep = os.environ.get("SARU_CLUSTER_KEEP_LOGS")
        if not keep:
            return
        for node in self.nodes.values():
            dest = Path(keep) / node.name
            dest.mkdir(parents=True, exist_ok=True)
            for which in ("pacemaker", "corosync"):
                src = node.state / f"var-log-{which}" / f"{which}.log"
                if src.is_file():
                    shutil.copyfile(src, dest / f"{which}.log")

    def down(self) -> None:
        """Keep the logs if asked, power the nodes off, then the lab's teardown (processes, namespaces)."""
        self.keep_logs()
        for node in self.nodes.values():
            if node.init_pid is not None and not process_gone(node.init_pid):
                signal_pid(node.init_pid, signal.SIGKILL)
            self._reap(node)
        super().down()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _ns_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
