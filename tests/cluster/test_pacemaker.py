"""The guide's cluster, for real: ``saru cluster crm`` loaded into a two-node Pacemaker/Corosync cluster.

One lab for the module (tests/cluster/bed.py), scenarios in sequence, each starting from where the
previous one left the group:

1. the generated configuration loads (``crm configure load update``) and ``crm_verify -L`` passes
   (it fails before: the seeded CIB has fencing on and no fencing device);
2. the group starts in order (VIPcheck → VIP → director, from the DC's log) and the client is served
   through the VIP by both real servers (direct routing, nftables data plane in the node);
3. ``crm node standby`` of the active node moves VIP and director; the client is served again;
4. a crash of the active node (its PID namespace killed, NIC down) moves them;
5. ``kill -9`` of corosync on the active node (split brain, no fencing): the survivor's VIPcheck refuses
   while the old node still answers on the VIP; after the old node is powered off and a cleanup, it moves;
6. loss of upstream ping on the active node (the router refuses to answer it) moves them;
   no fail-back after each of 3-6 (the cluster settles with the group where it is);
7. the stock ``ocf:heartbeat:ldirectord`` drives ``saru-ldirectord`` (``[cluster] agent = "ldirectord"``).

Timings (seconds, monotonic clock of the test) are printed at the end and written to
``$SARU_CLUSTER_TIMINGS`` when set.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.bed import GATEWAY, OCF_DIR, VIP, ClusterBed, wait_until
from tests.helpers import require

GROUP = ("VIPCHK1", "LB_VIP", "LDIRECTOR1")
SARU = str(Path(sys.prefix) / "bin" / "saru")
OCF = OCF_DIR / "saru"

LDIRECTORD_CF = """\
checktimeout=2
checkinterval=1
quiescent=no
logfile="/var/log/pacemaker/saru-director.log"
virtual={vip}:80
	real=10.77.8.11:80 gate
	real=10.77.8.12:80 gate
	service=http
	scheduler=rr
	protocol=tcp
	checktype=negotiate
	checkport=80
	request="haCheker/haCheck.html"
	receive="up and running"
"""

SARU_TOML = """\
[director]
config = "ldirectord.cf"
dataplane = "nft"          # no IPVS on this kernel: direct routing through nftables

[ha]
mode = "pacemaker"
interface = "eth0"
vips = ["{vip}/24"]

[ha.ping]
hosts = ["{gateway}"]
multiplier = 100
attempts = 2
timeout = 1

[cluster]
agent = "{agent}"
ping_interval = 2
"""

pytestmark = pytest.mark.timeout(150)


class State:
    """What the scenarios hand on to each other."""

    active: str = ""
    timings: dict[str, float] = {}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterBed]:
    ok, reason = ClusterBed.available()
    require(ok, reason)
    require(os.access(SARU, os.X_OK), f"{SARU} is not installed (make venv)")
    workdir = tmp_path_factory.mktemp("cluster")
    try:
        with ClusterBed(workdir) as the_lab:
            State.timings.update(the_lab.timings)
            yield the_lab
    finally:
        if State.timings:
            text = json.dumps({k: round(v, 2) for k, v in State.timings.items() if not k.startswith("_")}, indent=1)
            print(f"\ncluster timings (s): {text}")
            if os.environ.get("SARU_CLUSTER_TIMINGS"):
                Path(os.environ["SARU_CLUSTER_TIMINGS"]).write_text(text + "\n")


def generate(lab: ClusterBed, agent: str) -> Path:
    """Write the lab's saru.toml + ldirectord.cf and run ``saru cluster crm`` on it; the crm file's path."""
    d = lab.workdir / f"config-{agent}"
    d.mkdir(exist_ok=True)
    (d / "ldirectord.cf").write_text(LDIRECTORD_CF.format(vip=VIP))
    (d / "saru.toml").write_text(SARU_TOML.format(vip=VIP, gateway=GATEWAY, agent=agent))
    out = d / "cluster.crm"
    got = subprocess.run([SARU, "cluster", "crm", "--settings", str(d / "saru.toml"), "-o", str(out)],
                         capture_output=True, text=True, timeout=30, check=False)
    assert got.returncode == 0, got.stderr
    return out


def other(name: str) -> str:
    return "node2" if name == "node1" else "node1"


def group_on(lab: ClusterBed, node: str, members: tuple[str, ...] = GROUP) -> bool:
    """Every group member started on ``node`` only, and the kernel holds the VIP there only."""
    where = lab.resources(node)
    return all(where.get(r) == [node] for r in members) and lab.vip_on() == [node]


def served(lab: ClusterBed) -> str | None:
    body = lab.client_get()
    return body if body and "hello" in body else None


def settle(lab: ClusterBed, node: str) -> None:
    """Wait until the cluster has nothing left to do (``crm_resource --wait``)."""
    lab.node_run(node, "crm_resource", "--wait", "--timeout=60s", timeout=90)


def failover(lab: ClusterBed, old: str, what: str, members: tuple[str, ...] = GROUP) -> str:
    """Wait until the group runs on the other node and the client is served again; records the timing."""
    new = other(old)
    t0 = State.timings.pop("_t0")
    wait_until(lambda: lab.vip_on() == [new], 60, f"{what}: VIP on {new}")
    State.timings[f"{what}_vip"] = time.monotonic() - t0
    wait_until(lambda: group_on(lab, new, members), 60, f"{what}: group on {new}")
    State.timings[f"{what}_group"] = time.monotonic() - t0
    wait_until(lambda: served(lab), 30, f"{what}: client served through the VIP")
    State.timings[f"{what}_served"] = time.monotonic() - t0
    State.active = new
    return new


def current(lab: ClusterBed) -> str:
    """The node running the whole group (and nothing elsewhere), once the cluster shows one."""
    def holder() -> str | None:
        vip = lab.vip_on()
        return vip[0] if len(vip) == 1 and group_on(lab, vip[0]) else None
    State.active = wait_until(holder, 60, "the group running on one node")
    return State.active


def mark() -> None:
    State.timings["_t0"] = time.monotonic()


# --------------------------------------------------------------------------------------------------


def test_generated_configuration_loads_and_verifies(lab: ClusterBed) -> None:
    assert (OCF / "director").is_file() and (OCF / "VIPcheck").is_file(), "ocf/saru agents are missing"
    before = lab.node_run("node1", "crm_verify", "-L", "-V", check=False)
    assert before.returncode != 0 and "STONITH" in before.stderr  # the seeded CIB has fencing on
    crm = generate(lab, "saru")
    mark()
    loaded = lab.node_run("node1", "crm", "configure", "load", "update", str(crm), check=False)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert "ERROR" not in loaded.stdout + loaded.stderr
    verify = lab.node_run("node2", "crm_verify", "-L", "-V", check=False)
    assert verify.returncode == 0, verify.stderr
    cib = ET.fromstring(lab.node_run("node2", "cibadmin", "--query").stdout)
    agents = {p.get("id"): f"{p.get('class')}:{p.get('provider')}:{p.get('type')}" for p in cib.iter("primitive")}
    assert agents == {"VIPCHK1": "ocf:saru:VIPcheck", "LB_VIP": "ocf:heartbeat:IPaddr2",
                      "LDIRECTOR1": "ocf:saru:director", "PINGD": "ocf:pacemaker:ping"}
    group = cib.find(".//group[@id='GrpBalancer']")
    assert group is not None and [p.get("id") for p in group.findall("primitive")] == list(GROUP)
    assert cib.find(".//clone[@id='PINGD-clone']/primitive[@id='PINGD']") is not None
    nvpairs = {n.get("name"): n.get("value") for n in cib.iter("nvpair")}
    assert nvpairs["stonith-enabled"] == "false" and nvpairs["no-quorum-policy"] == "ignore"
    assert nvpairs["resource-stickiness"] == "INFINITY"
    assert nvpairs["name"] == "pingd_score" and nvpairs["multiplier"] == "100" and nvpairs["host_list"] == GATEWAY
    assert nvpairs["binary"] == SARU and nvpairs["dataplane"] == "nft"
    constraints = {c.get("id"): c for c in cib.find("./configuration/constraints") or []}
    assert set(constraints) == {"location-GrpBalancer-PINGD", "GrpBalancer-with-PINGD", "order-PINGD-then-GrpBalancer",
                                "order-VIPCHK1-then-LB_VIP", "order-LB_VIP-then-LDIRECTOR1"}
    director_ops = {o.get("name"): o.attrib for o in cib.iterfind(".//primitive[@id='LDIRECTOR1']/operations/op")}
    assert director_ops["monitor"]["interval"] == "30s" and director_ops["monitor"]["on-fail"] == "restart"
    assert director_ops["start"]["start-delay"] == "5s" and director_ops["stop"]["on-fail"] == "block"


def test_group_starts_in_order_and_client_is_served(lab: ClusterBed) -> None:
    t0 = State.timings["_t0"]
    holder = wait_until(lambda: lab.vip_on(), 60, "VIP up after loading")
    State.timings["load_to_vip"] = time.monotonic() - t0
    node = holder[0]
    wait_until(lambda: group_on(lab, node), 60, f"group started on {node}")
    State.timings["load_to_group"] = time.monotonic() - t0
    wait_until(lambda: served(lab), 30, "client served through the VIP")
    State.timings["load_to_served"] = time.monotonic() - t0
    State.timings["empty_start_to_served"] = State.timings["formation"] + State.timings["load_to_served"]
    State.timings.pop("_t0")
    State.active = node

    log = lab.log(node)
    events = []
    for rsc in GROUP:
        began = re.search(rf"executing - rsc:{rsc} action:start ", log)
        done = re.search(rf"Result of start operation for {rsc} on {node}: ok", log)
        assert began and done, f"no start of {rsc} in {node}'s log"
        events.append((began.start(), done.start()))
    for (_, done), (began, _) in itertools.pairwise(events):
        assert done < began, f"start order is not {' -> '.join(GROUP)}: {events}"

    seen: set[str] = set()
    wait_until(lambda: seen.add((served(lab) or "").strip()) or {"fe1 hello", "fe2 hello"} <= seen, 20,
               f"both real servers answer through the VIP (seen {seen})", interval=0.05)


def test_standby_moves_the_group(lab: ClusterBed) -> None:
    old = current(lab)
    mark()
    lab.node_run(old, "crm", "node", "standby", old)
    new = failover(lab, old, "standby")
    assert lab.vip_on() == [new]
    lab.node_run(old, "crm", "node", "online", old)
    wait_until(lambda: lab.online(new) == ["node1", "node2"], 30, f"{old} online again")
    settle(lab, new)
    assert group_on(lab, new), "the group went back after the standby node came online (fail-back)"


def test_crash_of_the_active_node_moves_the_group(lab: ClusterBed) -> None:
    old = current(lab)
    mark()
    lab.crash_node(old)
    new = failover(lab, old, "crash")
    t0 = time.monotonic()
    lab.start_node(old)
    wait_until(lambda: lab.online(new) == ["node1", "node2"], 60, f"{old} rejoined")
    State.timings["crash_rejoin"] = time.monotonic() - t0
    settle(lab, new)
    assert group_on(lab, new), "the group went back to the rebooted node (fail-back)"


def failed_ops(lab: ClusterBed, seen_by: str) -> list[tuple[str, str]]:
    """(operation key, node) of every recorded failure, e.g. ("VIPCHK1_start_0", "node2")."""
    mon = lab.crm_mon(seen_by)
    return [] if mon is None else [(f.get("op_key", ""), f.get("node", "")) for f in mon.iter("failure")]


def test_vipcheck_refuses_the_vip_while_the_old_node_still_answers(lab: ClusterBed) -> None:
    """kill -9 corosync on the active node: split brain without fencing (research pitfall 9).

    The old node keeps its VIP and director; the survivor's VIPcheck sees the VIP answer and refuses,
    so the VIP is never duplicated. Once the old node is really gone, a cleanup lets the survivor take over.
    """
    old = current(lab)
    new = other(old)
    pid = lab.node_run(old, "pidof", "corosync").stdout.split()
    assert len(pid) == 1
    mark()
    lab.node_run(old, "kill", "-KILL", pid[0])
    wait_until(lambda: ("VIPCHK1_start_0", new) in failed_ops(lab, new), 60,
               f"VIPcheck on {new} refuses while {old} holds the VIP")
    State.timings["kill_corosync_vipcheck_refused"] = time.monotonic() - State.timings.pop("_t0")
    assert lab.vip_on() == [old], "the VIP was duplicated"
    assert served(lab), "the old node stopped serving"
    lab.crash_node(old)
    mark()
    lab.node_run(new, "crm", "resource", "cleanup", "GrpBalancer")
    failover(lab, old, "after_cleanup")
    lab.start_node(old)
    wait_until(lambda: lab.online(new) == ["node1", "node2"], 60, f"{old} rejoined")
    settle(lab, new)
    assert group_on(lab, new), "the group went back to the rebooted node (fail-back)"


def ping_score(lab: ClusterBed, node: str, seen_by: str) -> str | None:
    mon = lab.crm_mon(seen_by)
    if mon is None:
        return None
    for n in mon.iter("node"):
        if n.get("name") == node:
            for attr in n.iter("attribute"):
                if attr.get("name") == "pingd_score":
                    return attr.get("value")
    return None


def test_loss_of_upstream_ping_moves_the_group(lab: ClusterBed) -> None:
    old = current(lab)
    new = other(old)
    wait_until(lambda: ping_score(lab, old, new) == "100" and ping_score(lab, new, new) == "100", 30,
               "both nodes reach the router")
    blocked = f"{lab.nodes[old].address}/32"
    mark()
    lab.ip("rt", "route", "add", "prohibit", blocked)  # the router stops answering the active node
    try:
        failover(lab, old, "ping_loss")
        assert ping_score(lab, old, new) == "0"
    finally:
        lab.ip("rt", "route", "del", "prohibit", blocked)
    wait_until(lambda: ping_score(lab, old, new) == "100", 30, f"{old} reaches the router again")
    settle(lab, new)
    assert group_on(lab, new), "the group went back when the old node's ping recovered (fail-back)"


def test_stock_ldirectord_agent_drives_saru_ldirectord(lab: ClusterBed) -> None:
    node = current(lab)
    crm = generate(lab, "ldirectord")
    mark()
    loaded = lab.node_run(node, "crm", "configure", "load", "update", str(crm), check=False)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert lab.node_run(node, "crm_verify", "-L", "-V", check=False).returncode == 0

    def ldirectord_running() -> bool:
        shown = lab.node_run(node, "crm_resource", "--resource", "LDIRECTOR1", "--query-xml", check=False).stdout
        return 'type="ldirectord"' in shown and group_on(lab, node)

    wait_until(ldirectord_running, 90, "LDIRECTOR1 restarted as ocf:heartbeat:ldirectord")
    State.timings["ldirectord_agent_swap"] = time.monotonic() - State.timings.pop("_t0")
    ps = lab.node_run(node, "ps", "-ww", "-eo", "args").stdout
    assert re.search(r"saru-ldirectord \S*ldirectord\.cf start", ps), ps
    assert wait_until(lambda: served(lab), 30, "client served by saru-ldirectord")
    # the stock agent's stop and start move it like the other one
    mark()
    lab.node_run(node, "crm", "node", "standby", node)
    new = failover(lab, node, "ldirectord_standby")
    ps_old = lab.node_run(node, "ps", "-ww", "-eo", "args").stdout
    assert "saru-ldirectord" not in ps_old, "saru-ldirectord still runs on the standby node"
    assert "saru-ldirectord" in lab.node_run(new, "ps", "-ww", "-eo", "args").stdout
    lab.node_run(node, "crm", "node", "online", node)


def test_readable_log_tells_the_last_failover(lab: ClusterBed) -> None:
    """``saru cluster log`` on the surviving node's pacemaker.log lists the failover just caused (standby)."""
    new = State.active
    old = other(new)
    log = lab.nodes[new].state / "var-log-pacemaker" / "pacemaker.log"
    settings = lab.workdir / "config-saru" / "saru.toml"
    got = subprocess.run([SARU, "cluster", "log", "--json", "--settings", str(settings), str(log)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert got.returncode == 0, got.stderr
    events = [json.loads(line) for line in got.stdout.splitlines()]
    standby = [i for i, e in enumerate(events) if e["kind"] == "standby" and e["node"] == old]
    assert standby, f"no 'standby' event for {old} in {new}'s log: {got.stdout[-2000:]}"
    after = events[standby[-1]:]
    for rsc in GROUP:
        assert any(e["kind"] == "resource-started" and (e["node"], e["resource"]) == (new, rsc) for e in after), \
            f"{rsc} started on {new} is missing after the standby of {old}: {after}"
    if [e["node"] for e in events if e["kind"] == "dc"][-1:] == [new]:  # the DC also saw the plan and its end
        kinds = [(e["kind"], e["message"]) for e in after]
        assert ("failover", f"failover of GrpBalancer: {old} (standby) → {new}") in kinds, kinds
        assert ("failover-done", f"failover of GrpBalancer: {old} → {new} completed") in kinds, kinds
