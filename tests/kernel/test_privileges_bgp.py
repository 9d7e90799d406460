"""A root ``saru run`` that drops privileges still speaks BGP: the BIRD it starts gets CAP_NET_BIND_SERVICE
(port 179) and, with BFD, CAP_NET_ADMIN for its own exec, while the daemon keeps nothing inheritable or
ambient. In ``saru-…`` namespaces (``tests.lab.guide``): the director ``ld1`` peers with a BIRD router
in ``rt`` (TCP MD5, BFD); the VIP's route reaches the router. Before the fix BIRD started with no
capability after the drop: "Cannot open listening socket", no session. (The same under the packaged
unit: tests/packaging/test_bgp.py.)"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.control import request_sync
from saru.daemon.privileges import KEEP, mask
from saru.subproc import RunAs
from tests.helpers import proc_status, readable_python, require
from tests.lab.guide import REALS, VIP, Topology

pytestmark = pytest.mark.timeout(120)

ROUTER, DIRECTOR = "10.77.6.1", "10.77.6.2"
CAP_NET_BIND_SERVICE, CAP_NET_ADMIN = 1 << 10, 1 << 12
CF = """\
checkinterval=1
autoreload=no
virtual={vip}:80
\treal={fe1}:80 gate
\tchecktype=on
\tprotocol=tcp
"""
ROUTER_CONF = """\
router id {router};
protocol device {{ scan time 1; }}
protocol bfd {{ interface "*" {{ interval 100 ms; multiplier 5; }}; }}
protocol bgp director {{
  local {router} as 65000; neighbor {director} as 65001; password "k-s3cret"; bfd on;
  hold time 9; connect delay time 1; connect retry time 1; error wait time 1, 2;
  ipv4 {{ import all; export none; }};
}}
"""



@pytest.fixture
def topo(workdir: Path) -> Iterator[Topology]:
    ok, why = Topology.available()
    require(ok, why)
    require(shutil.which("bird", path="/usr/sbin:/usr/bin:/sbin:/bin") is not None,
            "bird is not installed (Debian: apt install bird2; make deps)")
    with Topology(workdir / "lab") as t:
        yield t


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_dropped_daemon_gives_bird_only_what_it_needs(topo: Topology, user: RunAs, workdir: Path) -> None:
    topo.mode("dr")
    (workdir / "router.conf").write_text(ROUTER_CONF.format(router=ROUTER, director=DIRECTOR))
    router_ctl = str(workdir / "router.ctl")
    topo.popen("rt", "bird", "-f", "-c", str(workdir / "router.conf"), "-s", router_ctl,
               "-P", str(workdir / "router.pid"), stdout=(workdir / "router.out").open("w"))
    cf = workdir / "ldirectord.cf"
    cf.write_text(CF.format(vip=VIP, fe1=REALS["fe1"][2]))
    cf.chmod(0o644)
    settings = workdir / "saru.toml"
    settings.write_text(f'[director]\nconfig = "{cf}"\ndataplane = "nft"\nuser = "{user.name}"\n'
                        f'command_user = "{user.name}"\n\n[bgp]\nasn = 65001\nrouter_id = "{DIRECTOR}"\n'
                        f'hold_time = 9\nbfd_interval = 0.1\nbfd_multiplier = 5\n\n[[bgp.neighbors]]\n'
                        f'address = "{ROUTER}"\nasn = 65000\npassword = "k-s3cret"\nbfd = true\n')
    run = workdir / "run"
    python, pythonpath = readable_python()
    env = {k: v for k, v in topo.environ().items() if k not in ("SARU_DROP_PRIVILEGES", "SARU_COMMAND_USER")}
    env.update(PYTHONPATH=pythonpath, SARU_RUNTIME_DIR=str(run), SARU_STATE_DIR=str(workdir / "state"))
    log = (workdir / "daemon.log").open("w")
    daemon = topo.popen("ld1", python, "-m", "saru", "run", "-c", str(settings), env=env, stdout=log, stderr=log)

    def router_has_route() -> bool:
        out = topo.run("rt", "birdc", "-s", router_ctl, "show", "route", f"{VIP}/32", check=False).stdout
        return f"via {DIRECTOR}" in out

    def bfd_up() -> bool:
        try:
            doc = request_sync(run / "ldirectord.cf.sock", "status", timeout=2)["bgp"]
        except OSError:
            return False
        return bool(doc["neighbors"][0]["state"] == "Established" and doc["neighbors"][0]["bfd"] == "Up")

    try:
        deadline = time.monotonic() + 30
        while not (router_has_route() and bfd_up()):
            assert daemon.poll() is None, (workdir / "daemon.log").read_text()
            assert time.monotonic() < deadline, (workdir / "daemon.log").read_text() + \
                (run / "ldirectord.cf-bird.log").read_text(errors="replace")
            time.sleep(0.2)
        status = proc_status(daemon.pid)
        assert status["Uid"].split() == [str(user.uid)] * 4, status["Uid"]
        assert status["CapEff"] == f"{mask(KEEP):016x}"
        assert (status["CapInh"], status["CapAmb"]) == ("0" * 16, "0" * 16)
        birds = [pid for pid in children(daemon.pid) if Path(f"/proc/{pid}/comm").read_text().strip() == "bird"]
        assert len(birds) == 1, children(daemon.pid)
        bird = proc_status(birds[0])
        assert bird["Uid"].split() == [str(user.uid)] * 4, bird["Uid"]
        want = f"{CAP_NET_BIND_SERVICE | CAP_NET_ADMIN:016x}"
        assert [bird[k] for k in ("CapInh", "CapPrm", "CapEff", "CapAmb")] == [want] * 4, bird
        request_sync(run / "ldirectord.cf.sock", "stop", timeout=5)
        assert daemon.wait(20) == 0
        assert not Path(f"/proc/{birds[0]}").exists()  # stopped (and reaped) with the daemon
    finally:
        if daemon.poll() is None:
            daemon.kill()
        log.close()
