"""``[bgp]`` under the packaged, unprivileged unit: saru.service (user ``saru``, three capabilities kept for
itself, the unit's seccomp filter and sandbox) starts BIRD 2 itself and peers with a real BIRD router.

The session's container (``machine``, tests/packaging/conftest.py; the root holds ``bird2``, its own
service masked). The router is a second BIRD, as root, in a network namespace ``saru-bgprt`` inside
the container, reached over a veth pair (10.78.0.1 there, 10.78.0.2 here): every packet stays inside
the container. The director proxies VIP 10.78.0.100:80 (on ``lo``) to two real HTTP servers that
the tests start and stop. In order:

* start with the reals down: the session is Established (TCP MD5 ``password`` on both sides), the VIP
  is *not* announced (the table is applied, no real is up); the director's BIRD runs as ``saru`` with
  exactly CAP_NET_BIND_SERVICE (port 179) in its effective, permitted, inheritable and ambient sets —
  raised for its exec alone: the daemon's own threads keep nothing inheritable or ambient;
* the reals come up: the router gets the route (via 10.78.0.2), after the journal's "table in line
  with health"; ``saru status`` (text and JSON) and ``GET /api/v1/status`` show the neighbour and the
  route;
* the reals go down: the route is withdrawn at the router;
* a reload turns BFD on: BIRD is started again with CAP_NET_BIND_SERVICE and CAP_NET_ADMIN (BFD's
  sockets need SO_PRIORITY 7) and the router's BFD session comes up;
* ``systemctl stop saru``: no BIRD of ``saru`` is left, the router's session is down.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.packaging.container import Container
from tests.packaging.test_systemd import get, main_pid, proc_status, threads_inheritable_ambient

pytestmark = pytest.mark.timeout(300)

NETNS = "saru-bgprt"
ROUTER, DIRECTOR, VIP = "10.78.0.1", "10.78.0.2", "10.78.0.100"
PASSWORD = "md5-s3cret"
ROUTER_CTL = "/run/bgp-router.ctl"
CAP_NET_BIND_SERVICE, CAP_NET_ADMIN = 1 << 10, 1 << 12

ROUTER_CONF = f"""\
router id {ROUTER};
log "/run/bgp-router.log" all;
protocol device {{ scan time 1; }}
protocol bfd {{ interface "*" {{ interval 100 ms; multiplier 5; }}; }}
protocol bgp director {{
  local {ROUTER} as 65000; neighbor {DIRECTOR} as 65001; password "{PASSWORD}"; bfd on;
  hold time 9; keepalive time 3; connect delay time 1; connect retry time 1; error wait time 1, 2;
  ipv4 {{ import all; export none; }};
}}
"""
LDIRECTORD_CF = f"""\
checktimeout=1
checkinterval=1
logfile="/var/log/saru/bgp.log"
virtual={VIP}:80
\treal=127.0.0.1:8181 masq
\treal=127.0.0.1:8182 masq
\tprotocol=tcp
\tchecktype=connect
\tquiescent=no
"""


def saru_toml(bfd: bool) -> str:
    return f"""\
[director]
config = "bgp.cf"
dataplane = "proxy"

[api]
listen = "127.0.0.1:9181"

[bgp]
asn = 65001
router_id = "{DIRECTOR}"
hold_time = 9
bfd_interval = 0.1
bfd_multiplier = 5

[[bgp.neighbors]]
address = "{ROUTER}"
asn = 65000
password = "{PASSWORD}"
bfd = {"true" if bfd else "false"}
"""


def birdc(c: Container, *command: str) -> str:
    return c.run("birdc", "-s", ROUTER_CTL, *command, check=False).stdout


def route_at_router(c: Container) -> bool:
    return f"via {DIRECTOR}" in birdc(c, "show", "route", f"{VIP}/32")


def session_at_router(c: Container) -> str:
    rows = [line.split() for line in birdc(c, "show", "protocols", "director").splitlines()]
    return next((row[5] for row in rows if row[:1] == ["director"] and len(row) > 5), "")


def status(c: Container) -> dict[str, object]:
    doc: dict[str, object] = json.loads(c.run("saru", "status", "--json", "-c", "/etc/saru/saru.toml").stdout)
    return doc


def bgp_doc(c: Container) -> dict[str, object]:
    doc = status(c)["bgp"]
    assert isinstance(doc, dict)
    return doc


def neighbour(c: Container) -> dict[str, object]:
    neighbors = bgp_doc(c)["neighbors"]
    assert isinstance(neighbors, list) and len(neighbors) == 1, neighbors
    found: dict[str, object] = neighbors[0]
    return found


def saru_birds(c: Container) -> list[int]:
    """The BIRD processes of the ``saru`` user (the router's runs as root)."""
    out = c.run("pgrep", "-u", "saru", "-x", "bird", check=False).stdout
    return [int(pid) for pid in out.split()]


def caps(c: Container, pid: int) -> dict[str, int]:
    st = proc_status(c, pid)
    return {k: int(st[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapAmb")}


@pytest.fixture(scope="module")
def bed(machine: Container) -> Iterator[Container]:
    c = machine
    c.write("/etc/saru-test/bgp-router.conf", ROUTER_CONF)
    c.write("/etc/saru/saru.toml", saru_toml(bfd=False))
    c.write("/etc/saru/bgp.cf", LDIRECTORD_CF)
    for name in ("bgp-rs1", "bgp-rs2"):
        c.write(f"/srv/{name}/index.html", f"{name}\n")
    try:
        c.sh(f"ip netns add {NETNS}\n"
             f"ip link add bgp0 type veth peer name bgp1 netns {NETNS}\n"
             f"ip addr add {DIRECTOR}/24 dev bgp0 && ip link set bgp0 up\n"
             f"ip -n {NETNS} addr add {ROUTER}/24 dev bgp1 && ip -n {NETNS} link set bgp1 up\n"
             f"ip -n {NETNS} link set lo up\n"
             f"ip addr add {VIP}/32 dev lo\n")
        c.run("systemd-run", "--unit=bgp-router", "ip", "netns", "exec", NETNS, "bird", "-f", "-c",
              "/etc/saru-test/bgp-router.conf", "-s", ROUTER_CTL, "-P", "/run/bgp-router.pid")
        c.wait_for("the router's BIRD", lambda: "ready" in birdc(c, "show", "status"))
        c.run("systemctl", "reset-failed", "saru.service", check=False)
        yield c
    finally:
        c.run("systemctl", "stop", "saru.service", "bgp-router.service", "bgp-rs1.service", "bgp-rs2.service",
              check=False, timeout=60)
        c.sh(f"ip netns del {NETNS}; ip link del bgp0; ip addr del {VIP}/32 dev lo", check=False)


def start_reals(c: Container) -> None:
    for name, port in (("bgp-rs1", 8181), ("bgp-rs2", 8182)):
        c.run("systemd-run", f"--unit={name}", "--property=DynamicUser=yes", "python3", "-m", "http.server",
              str(port), "--bind", "127.0.0.1", "--directory", f"/srv/{name}")


def test_bird_under_the_unit_gets_port_179_alone_and_announces_only_a_servable_vip(bed: Container) -> None:
    c = bed
    c.run("systemctl", "start", "saru.service", timeout=150)  # Type=notify: returns with the table applied
    c.wait_for("the BGP session (TCP MD5)", lambda: neighbour(c)["state"] == "Established", timeout=30)
    assert session_at_router(c) == "Established"
    # the table is applied and no real is up: withdrawn, and the router has no route
    assert bgp_doc(c)["routes"] == [{"vip": VIP, "state": "withdrawn", "med": None, "since": None}]
    assert not route_at_router(c), birdc(c, "show", "route")

    # BIRD: the unit's user, exactly CAP_NET_BIND_SERVICE, raised for its exec alone
    birds = saru_birds(c)
    assert len(birds) == 1, birds
    assert caps(c, birds[0]) == dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapAmb"), CAP_NET_BIND_SERVICE)
    st = proc_status(c, birds[0])
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", st
    assert int(st["PPid"]) == main_pid(c)  # setpriv exec'd it: the daemon's child, dies with it
    threads = threads_inheritable_ambient(c, main_pid(c))  # the daemon's own: still nothing to hand on
    assert main_pid(c) in threads and set(threads.values()) == {(0, 0)}, threads
    # nothing refused by the unit's filter (EPERM) or sandbox, no signal from seccomp
    assert "SIGSYS" not in c.journal("saru.service", 200)
    log = c.run("cat", "/run/saru/bgp.cf-bird.log").stdout
    assert "Operation not permitted" not in log and "Permission denied" not in log, log

    # a real comes up: announced, and only after the table with it was applied
    start_reals(c)
    c.wait_for("the route at the router", lambda: route_at_router(c), timeout=30)
    journal = c.run("journalctl", "--no-pager", "-u", "saru.service", "-o", "cat").stdout
    applied = journal.find("table in line with health")
    announced = journal.find(f"BGP: {VIP} announced (MED 0)")
    assert 0 <= applied < announced, journal[-3000:]
    assert get(c, f"http://{VIP}/") in ("bgp-rs1\n", "bgp-rs2\n")


def test_status_and_the_api_show_the_neighbour_and_the_route(bed: Container) -> None:
    c = bed
    doc = bgp_doc(c)
    assert doc["running"] is True and doc["managed"] is True and doc["error"] is None, doc
    assert doc["neighbors"] == [{"address": ROUTER, "asn": 65000, "state": "Established",
                                 "info": doc["neighbors"][0]["info"], "bfd": None}], doc  # type: ignore[index]
    assert doc["routes"][0]["state"] == "up", doc  # type: ignore[index]
    text = c.run("saru", "status", "-c", "/etc/saru/saru.toml").stdout
    assert f"neighbour {ROUTER} AS65000: Established" in text and f"{VIP}: up (MED 0)" in text, text
    api = json.loads(get(c, "http://127.0.0.1:9181/api/v1/status"))
    assert api["bgp"]["neighbors"][0]["state"] == "Established", api.get("bgp")
    assert api["bgp"]["routes"][0]["state"] == "up", api.get("bgp")


def test_the_route_is_withdrawn_when_the_reals_go_down(bed: Container) -> None:
    c = bed
    c.run("systemctl", "stop", "bgp-rs1.service", "bgp-rs2.service")
    c.wait_for("the withdrawal at the router", lambda: not route_at_router(c), timeout=30)
    assert bgp_doc(c)["routes"][0]["state"] == "withdrawn"  # type: ignore[index]
    assert session_at_router(c) == "Established"  # the session stays: only the route went
    assert f"BGP: {VIP} withdrawn: no real up here" in c.journal("saru.service", 100)


def test_bfd_switched_on_by_a_reload_gives_bird_net_admin_too(bed: Container) -> None:
    c = bed
    before = saru_birds(c)
    c.write("/etc/saru/saru.toml", saru_toml(bfd=True))
    c.run("systemctl", "reload", "saru.service", timeout=60)
    c.wait_for("BFD up", lambda: neighbour(c)["bfd"] == "Up" and neighbour(c)["state"] == "Established",
               timeout=30)
    assert " Up " in birdc(c, "show", "bfd", "sessions")
    birds = saru_birds(c)
    assert len(birds) == 1 and birds != before, (before, birds)
    assert caps(c, birds[0]) == dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapAmb"),
                                              CAP_NET_BIND_SERVICE | CAP_NET_ADMIN)
    assert "SO_PRIORITY" not in c.run("cat", "/run/saru/bgp.cf-bird.log", check=False).stdout


def test_stop_takes_bird_along(bed: Container) -> None:
    c = bed
    assert saru_birds(c)
    c.run("systemctl", "stop", "saru.service", timeout=60)
    assert saru_birds(c) == []
    c.wait_for("the router's session down", lambda: session_at_router(c) not in ("", "Established"), timeout=15)
    assert "BGP: every VIP withdrawn" in c.journal("saru.service", 100)
