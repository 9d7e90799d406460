"""The readable cluster log (``saru.cluster.logconv``, ``saru cluster log``) on real Pacemaker 2.1.5 logs.

``fixtures/pacemaker/node2-*.log`` are node2's pacemaker.log and corosync.log from one run of
tests/cluster/test_pacemaker.py (kept with ``SARU_CLUSTER_KEEP_LOGS``), trimmed to the lines the converter
reads (the trimmed logs give the same events as the full ones): formation, standby of node1, crash of node2,
``kill -9`` of corosync on node1 (VIPcheck refusing the VIP), loss of upstream ping, a second standby.
"""

from __future__ import annotations

import heapq
import json
import os
import random
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saru.cli.cluster import follow
from saru.cli.main import main
from saru.cluster.logconv import Converter, Kind, convert, parse_line, sort_key

FIXTURES = Path(__file__).parent / "fixtures" / "pacemaker"
PCMK = FIXTURES / "node2-pacemaker.log"
COROSYNC = FIXTURES / "node2-corosync.log"
SARU = str(Path(sys.prefix) / "bin" / "saru")

EXPECTED = [
    ("23:28:45.512", "COROSYNC", "Corosync 3.1.7 starting"),
    ("23:28:45.856", "MEMBERSHIP", "corosync membership: node 2 joined"),
    ("23:28:45.908", "PACEMAKER", "Pacemaker 2.1.5 starting"),
    ("23:28:46.748", "LINK", "link 0 to node 1 is up"),
    ("23:28:46.924", "MEMBERSHIP", "corosync membership: node 1 joined"),
    ("23:28:47.060", "NODE_JOINED", "node1 joined the cluster"),
    ("23:28:47.060", "NODE_JOINED", "node2 joined the cluster"),
    ("23:28:49.524", "DC", "node2 is the DC"),
    ("23:28:52.980", "PING", "ping score on node1 is 100"),
    ("23:28:52.984", "PING", "ping score on node2 is 100"),
    ("23:28:52.992", "STARTED", "node2: resource PINGD started"),
    ("23:28:52.996", "STARTED", "node1: resource PINGD started"),
    ("23:28:59.036", "STARTED", "node1: resource VIPCHK1 started"),
    ("23:28:59.120", "STARTED", "node1: resource LB_VIP started"),
    ("23:29:05.292", "STARTED", "node1: resource LDIRECTOR1 started"),
    # crm node standby node1
    ("23:29:05.748", "STANDBY", "node1 is in standby"),
    ("23:29:05.756", "FAILOVER", "failover of GrpBalancer: node1 (standby) → node2"),
    ("23:29:05.844", "PING", "ping score on node1 cleared (ping stopped there)"),
    ("23:29:05.860", "STOPPED", "node1: resource PINGD stopped"),
    ("23:29:06.008", "STOPPED", "node1: resource LDIRECTOR1 stopped"),
    ("23:29:06.068", "STOPPED", "node1: resource LB_VIP stopped"),
    ("23:29:06.088", "STOPPED", "node1: resource VIPCHK1 stopped"),
    ("23:29:07.128", "STARTED", "node2: resource VIPCHK1 started"),
    ("23:29:07.224", "STARTED", "node2: resource LB_VIP started"),
    ("23:29:13.640", "STARTED", "node2: resource LDIRECTOR1 started"),
    ("23:29:13.640", "FAILOVER_DONE", "failover of GrpBalancer: node1 → node2 completed"),
    ("23:29:14.188", "ONLINE", "node1 is online again (standby off)"),
    ("23:29:15.264", "PING", "ping score on node1 is 100"),
    ("23:29:15.272", "STARTED", "node1: resource PINGD started"),
    # node2 (this log's node) crashed and boots again
    ("23:29:28.228", "COROSYNC", "Corosync 3.1.7 starting"),
    ("23:29:28.572", "MEMBERSHIP", "corosync membership: node2 joined"),
    ("23:29:28.624", "PACEMAKER", "Pacemaker 2.1.5 starting"),
    ("23:29:29.464", "LINK", "link 0 to node1 is up"),
    ("23:29:29.652", "MEMBERSHIP", "corosync membership: node1 joined"),
    ("23:29:29.780", "NODE_JOINED", "node1 joined the cluster"),
    ("23:29:29.780", "NODE_JOINED", "node2 joined the cluster"),
    ("23:29:30.780", "DC", "node1 is the DC"),
    ("23:29:33.032", "STARTED", "node2: resource PINGD started"),
    # kill -9 corosync on node1: split brain, node2's VIPcheck refuses while node1 holds the VIP
    ("23:29:35.268", "LINK", "link 0 to node1 is down"),
    ("23:29:35.904", "MEMBERSHIP", "corosync lost the token: forming a new membership"),
    ("23:29:37.108", "NODE_LEFT", "node1 left the cluster"),
    ("23:29:37.108", "MEMBERSHIP", "corosync membership: node1 left"),
    ("23:29:37.140", "DC", "node2 is the DC"),
    ("23:29:38.032", "FAILOVER", "failover of GrpBalancer: node1 (left the cluster) → node2"),
    ("23:29:38.068", "RESOURCE_FAILED",
     "node2: resource VIPCHK1 failed to start (10.77.8.240 answers ping: another node still holds it)"),
    ("23:29:38.068", "FAILOVER_FAILED",
     "failover of GrpBalancer: node1 → node2 failed: VIPCHK1 did not start on node2"),
    ("23:29:38.076", "FAIL_COUNT", "node2: fail count of VIPCHK1 (start) is INFINITY (banned there until cleanup)"),
    ("23:29:38.080", "FAILOVER", "failover of GrpBalancer: node1 (left the cluster) → node2"),
    ("23:29:38.096", "STOPPED", "node2: resource VIPCHK1 stopped"),
    # node1 powered off, crm resource cleanup
    ("23:29:38.492", "FAIL_COUNT", "node2: fail count of VIPCHK1 cleared"),
    ("23:29:40.544", "STARTED", "node2: resource VIPCHK1 started"),
    ("23:29:40.624", "STARTED", "node2: resource LB_VIP started"),
    ("23:29:46.968", "STARTED", "node2: resource LDIRECTOR1 started"),
    ("23:29:46.968", "FAILOVER_DONE", "failover of GrpBalancer: node1 → node2 completed"),
    ("23:29:48.676", "LINK", "link 0 to node1 is up"),
    ("23:29:48.704", "MEMBERSHIP", "corosync membership: node1 joined"),
    ("23:29:48.716", "NODE_JOINED", "node1 joined the cluster"),
    ("23:29:51.952", "STARTED", "node1: resource PINGD started"),
    # the router stops answering node2
    ("23:29:59.404", "PING", "ping score on node2 is 0 (upstream lost)"),
    ("23:30:04.416", "FAILOVER", "failover of GrpBalancer: node2 (upstream lost) → node1"),
    ("23:30:04.588", "STOPPED", "node2: resource LDIRECTOR1 stopped"),
    ("23:30:04.632", "STOPPED", "node2: resource LB_VIP stopped"),
    ("23:30:04.648", "STOPPED", "node2: resource VIPCHK1 stopped"),
    ("23:30:05.692", "STARTED", "node1: resource VIPCHK1 started"),
    ("23:30:05.780", "STARTED", "node1: resource LB_VIP started"),
    ("23:30:11.732", "STARTED", "node1: resource LDIRECTOR1 started"),
    ("23:30:11.732", "FAILOVER_DONE", "failover of GrpBalancer: node2 → node1 completed"),
    ("23:30:14.568", "PING", "ping score on node2 is 100 (upstream back)"),
    # the director resource switched to ocf:heartbeat:ldirectord (restart), then node1 standby again
    ("23:30:22.544", "STOPPED", "node1: resource LDIRECTOR1 stopped"),
    ("23:30:28.364", "STARTED", "node1: resource LDIRECTOR1 started"),
    ("23:30:28.716", "STANDBY", "node1 is in standby"),
    ("23:30:28.732", "FAILOVER", "failover of GrpBalancer: node1 (standby) → node2"),
    ("23:30:28.816", "PING", "ping score on node1 cleared (ping stopped there)"),
    ("23:30:28.828", "STOPPED", "node1: resource PINGD stopped"),
    ("23:30:29.048", "STOPPED", "node1: resource LDIRECTOR1 stopped"),
    ("23:30:29.104", "STOPPED", "node1: resource LB_VIP stopped"),
    ("23:30:29.124", "STOPPED", "node1: resource VIPCHK1 stopped"),
    ("23:30:30.168", "STARTED", "node2: resource VIPCHK1 started"),
    ("23:30:30.276", "STARTED", "node2: resource LB_VIP started"),
    ("23:30:35.888", "STARTED", "node2: resource LDIRECTOR1 started"),
    ("23:30:35.888", "FAILOVER_DONE", "failover of GrpBalancer: node1 → node2 completed"),
    ("23:30:36.444", "ONLINE", "node1 is online again (standby off)"),
]


def merged() -> list[str]:
    with PCMK.open() as a, COROSYNC.open() as b:
        return list(heapq.merge(a, b, key=sort_key))


def test_real_logs_give_the_expected_events() -> None:
    events = convert(merged())
    assert [(e.time.split(" ")[-1], e.kind.name, e.message) for e in events] == EXPECTED
    assert {e.host for e in events} == {"node2"}
    levels = {e.kind: e.level for e in events}
    assert levels[Kind.NODE_LEFT] == "warning" and levels[Kind.RESOURCE_FAILED] == "error"
    assert levels[Kind.STARTED] == "info"
    failed = next(e for e in events if e.kind is Kind.RESOURCE_FAILED)
    assert (failed.node, failed.resource) == ("node2", "VIPCHK1")


def test_group_names_come_from_the_settings_when_the_log_does_not_say() -> None:
    lines = [line for line in merged() if "/cib/configuration/resources" not in line and "<primitive" not in line]
    plain = [e.message for e in convert(lines) if e.kind is Kind.FAILOVER]
    assert plain[0] == "failover of VIPCHK1, LB_VIP, LDIRECTOR1: node1 (standby) → node2"
    named = convert(lines, groups={"VIPCHK1": "G", "LB_VIP": "G", "LDIRECTOR1": "G"})
    assert next(e.message for e in named if e.kind is Kind.FAILOVER) == "failover of G: node1 (standby) → node2"


HEAD = "Nov 25 23:40:01.000 node1 pacemaker-controld  [65] (log_executor_event) \tnotice: "


def test_monitor_failure_probe_and_cancel() -> None:
    # the format of Pacemaker 2.1's log_executor_event / process_graph_event lines (not in the fixture run)
    lines = [
        HEAD + "Result of monitor operation for LDIRECTOR1 on node1: not running | CIB update 90, graph action "
               "unconfirmed; call=44 key=LDIRECTOR1_monitor_30000 rc=7",
        HEAD + "Result of probe operation for LB_VIP on node1: not running | CIB update 9, graph action confirmed; "
               "call=5 key=LB_VIP_monitor_0 rc=7",
        HEAD + "Result of monitor operation for LB_VIP on node1: Cancelled | graph action confirmed; call=31 "
               "key=LB_VIP_monitor_10000",
        HEAD + "Result of stop operation for LB_VIP on node1: Timed Out | CIB update 91; call=46 key=LB_VIP_stop_0",
        "Nov 25 23:40:02.000 node2 pacemaker-controld  [66] (process_graph_event) \tnotice: Transition 9 action -1 "
        "(LDIRECTOR1_monitor_30000 on node1): expected 'ok' but got 'not running' | target-rc=0 rc=7 call-id=44",
    ]
    assert [e.message for e in convert(lines[:4])] == [
        "node1: monitor of LDIRECTOR1 failed (not running)",
        "node1: resource LB_VIP failed to stop (Timed Out)",
    ]
    # the DC's view of the same failure (node2's log) …
    assert [e.message for e in convert(lines[4:])] == ["node1: monitor of LDIRECTOR1 failed (not running)"]
    # … told once when both logs are read together (same node, operation and call id)
    assert [e.message for e in convert(lines)].count("node1: monitor of LDIRECTOR1 failed (not running)") == 1


def test_syslog_format_is_understood() -> None:
    lines = [
        "2026-11-25T23:29:37.108000+00:00 node2 pacemaker-controld[63]: notice: Cluster node node1 is now lost "
        "(was member)",
        "Nov 25 23:29:37 node2 pacemaker-controld[63]:  notice: Set DC to node2 (3.16.1)",
        "Nov 25 23:29:38 node2 corosync[24]:   [TOTEM ] A new membership (2.12) was formed. Members left: 1",
        "Nov 25 23:29:59 node2 pacemaker-attrd[61]:  notice: Setting pingd_score[node2]: 100 -> 0 | from node2",
    ]
    events = convert(lines)
    assert [e.message for e in events] == [
        "node1 left the cluster", "node2 is the DC", "corosync membership: node 1 left",
        "ping score on node2 is 0 (upstream lost)"]
    assert events[0].time == "2026-11-25T23:29:37.108000+00:00"
    assert parse_line("Nov 25 23:29:38 node2 sshd[1]: Accepted publickey") is None


def test_unknown_lines_and_garbage_are_ignored() -> None:
    rnd = random.Random(6)
    real = merged()
    garbage = ["", "\n", "\x00\xff\ufffd", "Nov 25", "Nov 25 23:28:45.372 node1 pacemaker-controld  [65] (",
               "Result of start operation for", "Setting x[: ->", "Actions: Move ( -> )"]
    garbage += ["".join(chr(rnd.randrange(1, 0x3000)) for _ in range(rnd.randrange(200))) for _ in range(300)]
    garbage += [line[: rnd.randrange(len(line) + 1)] for line in real]  # every real line, cut somewhere
    converter = Converter()
    for line in garbage:
        converter.feed(line)  # never raises
    assert convert(garbage[:300]) == []
    assert convert(line for line in real if "pacemaker" not in line and "corosync" not in line) == []


def test_cli_prints_one_line_per_event(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cluster", "log", str(PCMK), str(COROSYNC), "--settings", "/nonexistent/saru.toml"]) == 2
    capsys.readouterr()
    assert main(["cluster", "log", str(PCMK), str(COROSYNC)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(EXPECTED)
    assert out[16] == "Nov 25 23:29:05.756 node2 warning: failover of GrpBalancer: node1 (standby) → node2"
    assert main(["cluster", "log", str(PCMK), "--json", "-n", "2"]) == 0
    last = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["kind"], d["node"], d["message"]) for d in last] == [
        ("failover-done", "node2", "failover of GrpBalancer: node1 → node2 completed"),
        ("online", "node1", "node1 is online again (standby off)")]
    assert main(["cluster", "log", "/nonexistent/pacemaker.log"]) == 1
    assert "cannot read /nonexistent/pacemaker.log" in capsys.readouterr().err


def test_follow_survives_rotation_and_truncation(tmp_path: Path) -> None:
    log = tmp_path / "pacemaker.log"
    log.write_text("one\ntwo\npart")
    lines = follow([str(log)], poll=0.01)

    def until_idle() -> list[str]:
        got: list[str] = []
        deadline = time.monotonic() + 5
        while (line := next(lines)) is not None:
            got.append(line)
            assert time.monotonic() < deadline
        return got

    assert until_idle() == ["one", "two"]  # the unfinished line waits for its newline
    with log.open("a") as f:
        f.write("ial\nthree\n")
    assert until_idle() == ["partial", "three"]
    log.rename(tmp_path / "pacemaker.log.1")  # logrotate: the old file goes, a new one comes
    with (tmp_path / "pacemaker.log.1").open("a") as f:
        f.write("late in the old file\n")
    assert until_idle() == ["late in the old file"]
    log.write_text("new file\n")
    assert until_idle() == ["new file"]
    log.write_text("x\n")  # copytruncate-style: same file, shorter
    assert until_idle() == ["x"]
    lines.close()


def test_saru_cluster_log_follow(tmp_path: Path) -> None:
    """The command itself: the last events of what is there, then new ones as they are written."""
    if not os.access(SARU, os.X_OK):
        pytest.fail(f"{SARU} is not installed (make venv)")
    log = tmp_path / "pacemaker.log"
    real = PCMK.read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(real) if "Calculated transition 2," in line) + 1
    log.write_text("".join(real[:cut]))
    proc = subprocess.Popen([SARU, "cluster", "log", "--follow", "-n", "2", str(log)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None

        fd, buffered = proc.stdout.fileno(), b""

        def read_line() -> str:
            nonlocal buffered
            deadline = time.monotonic() + 10
            while b"\n" not in buffered:
                ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
                assert ready, f"saru cluster log --follow printed no line within 10 s (got {buffered!r})"
                chunk = os.read(fd, 65536)
                assert chunk, f"saru cluster log --follow exited: {proc.stderr.read()}"  # type: ignore[union-attr]
                buffered += chunk
            line, buffered = buffered.split(b"\n", 1)
            return line.decode()

        assert read_line().endswith("warning: node1 is in standby")
        assert read_line().endswith("warning: failover of GrpBalancer: node1 (standby) → node2")
        log.rename(tmp_path / "pacemaker.log.1")
        log.write_text("".join(real[cut:]))
        assert read_line().endswith("info: ping score on node1 cleared (ping stopped there)")
        assert read_line().endswith("info: node1: resource PINGD stopped")
    finally:
        proc.terminate()
        proc.wait(10)


def test_recent_events_for_saru_status(tmp_path: Path) -> None:
    """``saru status`` in pacemaker mode: the last events of the log's tail, the cut first line skipped."""
    from saru.cluster.logconv import recent_events
    from saru.model import ClusterSettings

    log = PCMK.read_text()
    path = tmp_path / "pacemaker.log"
    path.write_text(log)
    members = ("VIPCHK1", "LB_VIP", "LDIRECTOR1")
    whole = [e.line() for e in convert(log.splitlines(), dict.fromkeys(members, "GrpBalancer"), ("pingd_score",))]
    assert recent_events(str(path), ClusterSettings(), limit=5) == whole[-5:]
    assert recent_events(str(tmp_path / "missing.log"), ClusterSettings()) == []
    tail = recent_events(str(path), ClusterSettings(), limit=1000, tail_bytes=4096)
    # a tail lacks the context of what came before (where resources ran), so it may tell less
    assert 0 < len(tail) < len(whole) and set(tail) <= set(whole)
