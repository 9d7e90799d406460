"""The readable cluster log: Pacemaker 2.1 / Corosync 3 log lines → short operator events.

What Linux-HA Japan's ``pm_logconv`` gives the guide's operators, for Saru: a :class:`Converter` reads the
verbose ``pacemaker.log`` / ``corosync.log`` lines of one node (file format or syslog format) and
yields :class:`ClusterEvent` objects with one short sentence each — nodes joining and leaving, standby,
the DC, resources started/stopped/failed on a node, monitor failures, failovers planned and completed,
ping score changes, fail counts, Pacemaker/Corosync start and stop, Corosync links and membership.

Pure: no I/O, the converter only keeps what it needs to understand later lines (node id → name, where each
resource last started, the failover in progress, the group members announced by the CIB). Lines it does
not recognise — and garbage — are ignored. Each daemon's own copy of a fact is used once (the controller's
view of the membership, the CIB's replicated view of standby, ``attrd``'s view of attributes).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from saru.model import ClusterSettings

MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                       "Nov", "Dec"), 1)}


class Kind(StrEnum):
    """What an event is about (stable names: they appear in ``saru cluster log --json``)."""

    NODE_JOINED = "node-joined"
    NODE_LEFT = "node-left"
    STANDBY = "standby"
    ONLINE = "online"
    DC = "dc"
    STARTED = "resource-started"
    STOPPED = "resource-stopped"
    RESOURCE_FAILED = "resource-failed"
    MONITOR_FAILED = "monitor-failed"
    FAILOVER = "failover"
    FAILOVER_DONE = "failover-done"
    FAILOVER_FAILED = "failover-failed"
    PING = "ping"
    FAIL_COUNT = "fail-count"
    ATTRIBUTE = "attribute"
    PACEMAKER = "pacemaker"
    COROSYNC = "corosync"
    MEMBERSHIP = "membership"
    LINK = "link"
    QUORUM = "quorum"


@dataclass(frozen=True)
class ClusterEvent:
    """One operator message: ``time`` and ``host`` as written in the log line it came from."""

    time: str
    host: str
    kind: Kind
    message: str
    level: str = "info"  # info, warning or error
    node: str = ""
    resource: str = ""

    def line(self) -> str:
        return f"{self.time} {self.host} {self.level}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class LogLine:
    """A parsed log line: timestamp text, host, daemon (``pacemaker-controld``, ``corosync`` …), message."""

    time: str
    host: str
    daemon: str
    level: str
    message: str
    function: str = ""
    subsystem: str = ""  # corosync's [TOTEM ] etc.


_TS = (r"(?P<ts>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?"
       r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)")
# Pacemaker's own log file: "Nov 25 23:28:45.372 node1 pacemaker-controld  [65] (update_dc) \tinfo: Set DC to node2"
_PCMK_FILE = re.compile(_TS + r" (?P<host>\S+) (?P<daemon>pacemaker[\w-]*)\s*\[\d+\] \((?P<fn>[^)]*)\)\s+"
                        r"(?P<level>[a-z]+): (?P<msg>.*)$")
# corosync's log file: "Nov 25 23:28:45.512 [24] node2 corosync notice  [MAIN  ] Corosync Cluster Engine …"
_CORO_FILE = re.compile(_TS + r" \[\d+\] (?P<host>\S+) corosync (?P<level>[a-z]+)\s+\[(?P<sub>[A-Z]+)\s*\] "
                        r"(?P<msg>.*)$")
# syslog / journal: "Nov 25 23:28:45 node1 pacemaker-controld[65]: notice: Set DC …",
# "… corosync[24]:   [TOTEM ] A new membership …"
_SYSLOG = re.compile(_TS + r" (?P<host>\S+) (?P<daemon>pacemaker[\w-]*|corosync)\[\d+\]:\s+"
                     r"(?:\[(?P<sub>[A-Z]+)\s*\]\s+)?(?:(?P<level>[a-z]+):\s+)?(?P<msg>.*)$")


def parse_line(text: str) -> LogLine | None:
    """Split one log line into its parts; None for anything that is not a Pacemaker/Corosync line."""
    text = text.rstrip("\r\n")
    m = _PCMK_FILE.match(text)
    if m:
        return LogLine(m["ts"], m["host"], m["daemon"].rstrip(), m["level"], m["msg"], function=m["fn"])
    m = _CORO_FILE.match(text)
    if m:
        return LogLine(m["ts"], m["host"], "corosync", m["level"], m["msg"], subsystem=m["sub"])
    m = _SYSLOG.match(text)
    if m:
        return LogLine(m["ts"], m["host"], m["daemon"], m["level"] or "info", m["msg"], subsystem=m["sub"] or "")
    return None


def sort_key(text: str) -> str:
    """A key that orders lines of one year by their timestamp ("" for lines without one)."""
    m = re.match(_TS, text)
    if not m:
        return ""
    ts = m["ts"]
    if ts[0].isdigit():
        return ts[5:10] + " " + ts[11:].replace("T", " ")
    return f"{MONTHS.get(ts[:3], 0):02d}-{int(ts[4:6]):02d} {ts[7:]}"


# -- the messages ---------------------------------------------------------------------------------

_RESULT = re.compile(r"Result of (?P<op>\w+) operation for (?P<rsc>\S+) on (?P<node>\S+): (?P<status>[^|]*)")
_CONFIRMED = re.compile(r"Transition -?\d+ action -?\d+ \((?P<key>\S+) on (?P<node>\S+)\)"
                        r"(?: confirmed: (?P<status>[^|]*)|: expected '[^']*' but got '(?P<got>[^']*)')")
_CALL = re.compile(r"\bcall(?:-id)?=(-?\d+)")
_KEY = re.compile(r"\bkey=(\S+)")
_CIB_LRM = re.compile(r"^(?P<op>\+\+|\+ ) +/cib/status/node_state\[@id='(?P<id>[^']+)'\]/lrm\[[^\]]*\]/lrm_resources"
                      r"(?:/lrm_resource\[@id='(?P<rsc>[^']+)'\])?(?:/lrm_rsc_op\[@id='(?P<opid>[^']+)'\])?:\s+"
                      r"(?P<rest>.*)$")
_OPKEY = re.compile(r"^(?P<rsc>.+)_(?P<op>start|stop|monitor|promote|demote|migrate_to|migrate_from|notify|"
                    r"reload|reload-agent)_(?P<interval>\d+)$")
_PEER = re.compile(r"Cluster node (?P<node>\S+) is now (?P<state>member|lost) \(was (?P<was>[^)]*)\)")
_DC = re.compile(r"Set DC to (?P<node>\S+)")
_KNOWN = re.compile(r"Node (?P<id>\d+) is now known as (?P<node>\S+)")
_ACTION = re.compile(r"Actions: (?P<verb>\w+)\s+(?P<rsc>\S+)\s+\(\s*(?P<a>[^\s)]+)(?:\s*->\s*(?P<b>[^\s)]+))?\s*\)")
_CALCULATED = re.compile(r"Calculated transition (?P<n>\d+)")
_ATTR = re.compile(r"Setting (?P<name>[^\[\s]+)\[(?P<node>[^\]]+)\]: (?P<old>.*?) -> (?P<new>.*?)(?: \| .*)?$")
_CIB_NODE = re.compile(r"^(?P<op>\+\+|\+ |--) +/cib/configuration/nodes/node\[@id='(?P<id>[^']+)'\](?P<rest>.*)$")
_CIB_CONT = re.compile(r"^\+\+ {3,}(?P<xml><.*)$")
_CIB_RES = re.compile(r"^\+\+ +/cib/configuration/resources\S*:\s+(?P<xml><.*)$")
_PACEMAKER_START = re.compile(r"Starting Pacemaker (?P<version>[\d.]+)")
_COROSYNC_START = re.compile(r"Corosync Cluster Engine (?:\('?)?(?P<version>[\d.]+)'?\)?:? (?:starting up|started)")
_MEMBERSHIP = re.compile(r"A new membership \([^)]*\) was formed\. Members(?P<parts>.*)$")
_LINK = re.compile(r"host: (?P<id>\d+) link: (?P<link>\d+) is (?P<state>up|down)")

_PLAN_VERBS = {"Move", "Start", "Recover", "Migrate"}
_DONE_OPS = {"start": "started", "stop": "stopped", "promote": "promoted", "demote": "demoted",
             "migrate_to": "migrated away", "migrate_from": "migrated here", "reload": "reloaded",
             "reload-agent": "reloaded"}


@dataclass
class _Failover:
    source: str
    target: str
    resources: list[str]
    started: set[str] = field(default_factory=set)


class Converter:
    """Feed lines in order (one node's logs, merged by time); get the events each line means.

    ``groups`` maps a resource to the group it belongs to (else learnt from the CIB changes in the log),
    so that a failover is named after the group; ``ping_attributes`` are the node attributes that are
    ping scores (any attribute with "ping" in its name counts, too).
    """

    def __init__(self, groups: Mapping[str, str] | None = None, ping_attributes: Iterable[str] = ()) -> None:
        self.groups: dict[str, str] = dict(groups or {})
        self.ping_attributes = set(ping_attributes)
        self.names: dict[str, str] = {}          # node id → name
        self.location: dict[str, str] = {}       # resource → node it last started on
        self.standby: dict[str, bool] = {}
        self.lost: set[str] = set()
        self._plan: list[tuple[str, str, str, str]] = []  # (verb, resource, from, to) of the current schedule
        self._failovers: dict[tuple[str, str], _Failover] = {}
        self._seen_calls: set[tuple[str, str, str]] = set()
        self._cib_node: str | None = None
        self._cib_group: str | None = None
        self._cib_lrm: tuple[str, str | None] | None = None
        self._lrm: dict[tuple[str, str], str] = {}  # (node id, resource) → its last operation
        self._last_ping: dict[tuple[str, str], str] = {}

    # -- entry points ------------------------------------------------------------------------------

    def feed(self, text: str) -> list[ClusterEvent]:
        """The events of one raw log line ([] for lines that say nothing an operator needs)."""
        try:
            line = parse_line(text)
        except (ValueError, IndexError):  # pragma: no cover - the regexes are anchored; belt and braces
            return []
        if line is None:
            return []
        if line.daemon == "corosync":
            return list(self._corosync(line))
        return list(self._pacemaker(line))

    def convert(self, lines: Iterable[str]) -> Iterator[ClusterEvent]:
        for text in lines:
            yield from self.feed(text)

    # -- pacemaker ---------------------------------------------------------------------------------

    def _ev(self, line: LogLine, kind: Kind, message: str, level: str = "info", node: str = "",
            resource: str = "") -> ClusterEvent:
        return ClusterEvent(line.time, line.host, kind, message, level, node, resource)

    def _pacemaker(self, line: LogLine) -> Iterator[ClusterEvent]:
        msg, daemon = line.message, line.daemon
        if m := _KNOWN.search(msg):
            self.names[m["id"]] = m["node"]
            return
        if daemon == "pacemaker-based":
            yield from self._cib(line)
            return
        self._cib_node = self._cib_group = self._cib_lrm = None
        if daemon == "pacemaker-controld":
            yield from self._controld(line)
        elif daemon == "pacemaker-schedulerd":
            yield from self._scheduler(line)
        elif daemon == "pacemaker-attrd":
            if m := _ATTR.search(msg):
                yield from self._attribute(line, m["name"], m["node"], m["old"], m["new"])
        elif daemon == "pacemakerd":
            if m := _PACEMAKER_START.search(msg):
                # this node starts afresh: what it knew of resources and operations may be stale
                self.location.clear()
                self._seen_calls.clear()
                self._failovers.clear()
                yield self._ev(line, Kind.PACEMAKER, f"Pacemaker {m['version']} starting", node=line.host)
            elif msg.startswith("Shutting down Pacemaker"):
                yield self._ev(line, Kind.PACEMAKER, "Pacemaker shutting down", "warning", node=line.host)
            elif msg.startswith("Shutdown complete"):
                yield self._ev(line, Kind.PACEMAKER, "Pacemaker stopped", "warning", node=line.host)
            elif "respawn" in msg.lower() and "exceeded" in msg.lower():
                yield self._ev(line, Kind.PACEMAKER, f"Pacemaker gave up restarting a daemon: {msg}", "error")

    def _controld(self, line: LogLine) -> Iterator[ClusterEvent]:
        msg = line.message
        if m := _PEER.search(msg):
            node = m["node"]
            self._forget_calls(node)  # a node's call ids start again when its Pacemaker does
            if m["state"] == "lost":
                self.lost.add(node)
                yield self._ev(line, Kind.NODE_LEFT, f"{node} left the cluster", "warning", node=node)
            elif m["was"] != "member":
                self.lost.discard(node)
                yield self._ev(line, Kind.NODE_JOINED, f"{node} joined the cluster", node=node)
        elif m := _DC.search(msg):
            yield self._ev(line, Kind.DC, f"{m['node']} is the DC", node=m["node"])
        elif msg.startswith("Result of ") and (m := _RESULT.search(msg)):
            op, interval = m["op"], "1"
            if op == "probe":
                op, interval = "monitor", "0"
            elif (key := _KEY.search(msg)) and (k := _OPKEY.match(key[1])):
                interval = k["interval"]
            call = _CALL.search(msg)
            yield from self._result(line, m["rsc"], op, interval, m["node"], m["status"], call[1] if call else None)
        elif msg.startswith("Transition") and (m := _CONFIRMED.search(msg)):
            k = _OPKEY.match(m["key"])
            if k is None or m["node"] == line.host:  # our own operations: the "Result of" line said it
                return
            status = m["status"] if m["status"] is not None else m["got"]
            call = _CALL.search(msg)
            yield from self._result(line, k["rsc"], k["op"], k["interval"], m["node"], status,
                                    call[1] if call else None)

    def _forget_calls(self, node: str) -> None:
        self._seen_calls = {seen for seen in self._seen_calls if seen[0] != node}

    def _result(self, line: LogLine, rsc: str, op: str, interval: str, node: str, status: str,
                call: str | None) -> Iterator[ClusterEvent]:
        rsc = rsc.split(":", 1)[0]
        status = status.strip()
        if call is not None:
            seen = (node, f"{rsc}_{op}_{interval}", call)
            if seen in self._seen_calls:
                return
            self._seen_calls.add(seen)
        if status.lower() in ("cancelled", "pending", ""):
            return
        ok = status == "ok"
        if op == "monitor":
            if interval == "0" or ok:  # probes find what they find; a passing monitor is no news
                return
            yield self._ev(line, Kind.MONITOR_FAILED, f"{node}: monitor of {rsc} failed ({_short(status)})", "error",
                           node, rsc)
            return
        if op == "notify":
            return
        if ok:
            done = _DONE_OPS.get(op, f"{op} done")
            if op == "start":
                self.location[rsc] = node
            elif op == "stop" and self.location.get(rsc) == node:
                del self.location[rsc]
            yield self._ev(line, Kind.STOPPED if op == "stop" else Kind.STARTED,
                           f"{node}: resource {rsc} {done}", node=node, resource=rsc)
            if op == "start":
                yield from self._failover_progress(line, rsc, node)
            return
        yield self._ev(line, Kind.RESOURCE_FAILED, f"{node}: resource {rsc} failed to {op} ({_short(status)})",
                       "error", node, rsc)
        if op == "start":
            for key, fo in list(self._failovers.items()):
                if fo.target == node and rsc in fo.resources:
                    del self._failovers[key]
                    yield self._ev(line, Kind.FAILOVER_FAILED,
                                   f"failover of {self._what(fo.resources)}: {fo.source} → {fo.target} failed: "
                                   f"{rsc} did not start on {node}", "error", node, rsc)

    def _failover_progress(self, line: LogLine, rsc: str, node: str) -> Iterator[ClusterEvent]:
        for key, fo in list(self._failovers.items()):
            if fo.target == node and rsc in fo.resources:
                fo.started.add(rsc)
                if fo.started >= set(fo.resources):
                    del self._failovers[key]
                    yield self._ev(line, Kind.FAILOVER_DONE,
                                   f"failover of {self._what(fo.resources)}: {fo.source} → {fo.target} completed",
                                   node=node)

    def _scheduler(self, line: LogLine) -> Iterator[ClusterEvent]:
        msg = line.message
        if m := _ACTION.search(msg):
            verb, rsc = m["verb"], m["rsc"]
            if verb in _PLAN_VERBS and ":" not in rsc:  # clone instances run everywhere: no failover
                self._plan.append((verb, rsc, m["a"], m["b"] or ""))
            return
        if not _CALCULATED.search(msg):
            return
        plan, self._plan = self._plan, []
        moves: dict[tuple[str, str], list[str]] = {}
        for verb, rsc, a, b in plan:
            if b:  # Move/Recover/Migrate (a -> b)
                source, target = a, b
            else:  # Start (b): a failover when it last ran on another node
                source, target = self.location.get(rsc, ""), a
                if not source and verb == "Start":  # not seen running: it ran on the node that just went away
                    gone = {n for n in self.lost | {n for n, on in self.standby.items() if on} if n != target}
                    source = gone.pop() if len(gone) == 1 else ""
                if not source or source == target:
                    continue
            if source != target:
                moves.setdefault((source, target), []).append(rsc)
        for (source, target), resources in moves.items():
            fo = self._failovers.get((source, target))
            if fo is not None and set(fo.resources) & set(resources):  # the same failover, re-planned
                fo.resources.extend(r for r in resources if r not in fo.resources)
                continue
            self._failovers[(source, target)] = _Failover(source, target, resources)
            why = (" (left the cluster)" if source in self.lost else " (standby)" if self.standby.get(source)
                   else " (upstream lost)" if self._ping_lost(source) else "")
            yield self._ev(line, Kind.FAILOVER, f"failover of {self._what(resources)}: {source}{why} → {target}",
                           "warning", target)

    def _ping_lost(self, node: str) -> bool:
        return any(n == node and (v == "0" or v.startswith("-")) for (_, n), v in self._last_ping.items())

    def _what(self, resources: list[str]) -> str:
        groups = {self.groups.get(r) for r in resources}
        if len(groups) == 1 and None not in groups:
            return str(groups.pop())
        return ", ".join(resources)

    def _cib(self, line: LogLine) -> Iterator[ClusterEvent]:
        msg = line.message
        if m := _CIB_LRM.match(msg):
            self._cib_node = self._cib_group = None
            self._cib_lrm = (m["id"], m["rsc"]) if m["op"] == "++" else None
            if m["op"] == "+ " and m["rsc"] and m["opid"]:
                attrs = dict(re.findall(r"@([\w-]+)=([^,]*)", m["rest"]))
                self._lrm_update(m["id"], m["rsc"], m["opid"], attrs)
            elif m["op"] == "++":
                self._lrm_xml(m["rest"])
            return
        if m := _CIB_RES.match(msg):
            self._cib_node = None
            self._cib_group = _xml_id(m["xml"], "group")
            return
        if m := _CIB_NODE.match(msg):
            self._cib_group = None
            self._cib_node = m["id"]
            rest = m["rest"]
            if m["op"] == "--" and re.search(r"nvpair\[@id='[^']*standby'\]", rest):
                yield from self._set_standby(line, m["id"], False)
            elif m["op"] == "+ " and re.search(r"nvpair\[@id='[^']*standby'\]", rest):
                if v := re.search(r"@value=(\w+)", rest):
                    yield from self._set_standby(line, m["id"], _truthy(v[1]))
            elif m["op"] == "++":
                yield from self._cib_nvpair(line, m["id"], rest)
            return
        if m := _CIB_CONT.match(msg):
            xml = m["xml"]
            if self._cib_lrm is not None:
                self._lrm_xml(xml)
            elif self._cib_node is not None:
                yield from self._cib_nvpair(line, self._cib_node, xml)
            elif self._cib_group is not None:
                if xml.startswith("</group"):
                    self._cib_group = None
                elif rsc := _xml_id(xml, "primitive"):
                    self.groups[rsc] = self._cib_group
            return
        self._cib_node = self._cib_group = self._cib_lrm = None

    def _lrm_xml(self, xml: str) -> None:
        """``<lrm_resource id=…>`` opens a resource; ``<lrm_rsc_op …/>`` records an operation of it."""
        if self._cib_lrm is None:
            return
        node_id, rsc = self._cib_lrm
        if res := _xml_id(xml, "lrm_resource"):
            self._cib_lrm = (node_id, res)
        elif (opid := _xml_id(xml, "lrm_rsc_op")) and rsc:
            attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', xml))
            if attrs.get("on_node"):
                self.names.setdefault(node_id, attrs["on_node"])
            self._lrm_update(node_id, rsc, opid, attrs)

    def _lrm_update(self, node_id: str, rsc: str, opid: str, attrs: Mapping[str, str]) -> None:
        """Where each resource runs, from the CIB's record of the last operation of it on each node."""
        if not opid.endswith("_last_0"):
            return
        if "operation" in attrs:
            self._lrm[(node_id, rsc)] = attrs["operation"]
        if attrs.get("rc-code") != "0" or attrs.get("op-status", "0") != "0":
            return
        node = self.names.get(node_id, f"node {node_id}")
        op = self._lrm.get((node_id, rsc))
        if op in ("start", "promote", "migrate_from"):
            self.location[rsc] = node
        elif op == "stop" and self.location.get(rsc) == node:
            del self.location[rsc]

    def _cib_nvpair(self, line: LogLine, node_id: str, xml: str) -> Iterator[ClusterEvent]:
        if 'name="standby"' in xml and (v := re.search(r'value="([^"]*)"', xml)):
            yield from self._set_standby(line, node_id, _truthy(v[1]))

    def _set_standby(self, line: LogLine, node_id: str, on: bool) -> Iterator[ClusterEvent]:
        node = self.names.get(node_id, f"node {node_id}")
        if self.standby.get(node, False) == on:
            return
        self.standby[node] = on
        if on:
            yield self._ev(line, Kind.STANDBY, f"{node} is in standby", "warning", node)
        else:
            yield self._ev(line, Kind.ONLINE, f"{node} is online again (standby off)", node=node)

    def _attribute(self, line: LogLine, name: str, node: str, old: str, new: str) -> Iterator[ClusterEvent]:
        if name.startswith("#") or name.startswith("last-failure-") or old == new:
            return
        unset = new in ("(unset)", "(null)")
        if name in self.ping_attributes or "ping" in name.lower():
            if self._last_ping.get((name, node)) == new:
                return
            self._last_ping[(name, node)] = new
            if unset:
                yield self._ev(line, Kind.PING, f"ping score on {node} cleared (ping stopped there)", node=node)
                return
            lost = new == "0" or new.startswith("-")
            back = not lost and old not in ("(unset)", "(null)") and _num(old) < _num(new)
            note = " (upstream lost)" if lost else " (upstream back)" if back else ""
            yield self._ev(line, Kind.PING, f"ping score on {node} is {new}{note}", "error" if lost else "info",
                           node)
            return
        if name.startswith("fail-count-"):
            rsc, _, op = name[len("fail-count-"):].partition("#")
            what = op.split("_", 1)[0] or "operation"
            if unset:
                yield self._ev(line, Kind.FAIL_COUNT, f"{node}: fail count of {rsc} cleared", node=node, resource=rsc)
            else:
                ban = " (banned there until cleanup)" if new.upper() == "INFINITY" else ""
                yield self._ev(line, Kind.FAIL_COUNT, f"{node}: fail count of {rsc} ({what}) is {new}{ban}",
                               "warning", node, rsc)
            return
        if unset:
            yield self._ev(line, Kind.ATTRIBUTE, f"{node}: attribute {name} deleted", node=node)
        else:
            yield self._ev(line, Kind.ATTRIBUTE, f"{node}: attribute {name} = {new}", node=node)

    # -- corosync ----------------------------------------------------------------------------------

    def _corosync(self, line: LogLine) -> Iterator[ClusterEvent]:
        msg = line.message
        if m := _COROSYNC_START.search(msg):
            yield self._ev(line, Kind.COROSYNC, f"Corosync {m['version']} starting", node=line.host)
        elif "Corosync Cluster Engine exiting" in msg:
            yield self._ev(line, Kind.COROSYNC, "Corosync stopped", "warning", node=line.host)
        elif m := _MEMBERSHIP.search(msg):
            parts = []
            for label, verb in (("joined", "joined"), ("left", "left")):
                if j := re.search(rf"{label}: ([\d ]+)", m["parts"]):
                    names = ", ".join(self.names.get(i, f"node {i}") for i in j[1].split())
                    parts.append(f"{names} {verb}")
            if parts:
                level = "warning" if any(p.endswith("left") for p in parts) else "info"
                yield self._ev(line, Kind.MEMBERSHIP, f"corosync membership: {'; '.join(parts)}", level)
        elif msg.startswith("A processor failed, forming new configuration"):
            yield self._ev(line, Kind.MEMBERSHIP, "corosync lost the token: forming a new membership", "warning")
        elif m := _LINK.search(msg):
            node = self.names.get(m["id"], f"node {m['id']}")
            down = m["state"] == "down"
            yield self._ev(line, Kind.LINK, f"link {m['link']} to {node} is {m['state']}",
                           "warning" if down else "info", node)
        elif "within the non-primary component" in msg:
            yield self._ev(line, Kind.QUORUM, "this node lost quorum", "error", node=line.host)


def _xml_id(xml: str, tag: str) -> str | None:
    m = re.match(rf'<{tag}\b[^>]*\bid="([^"]+)"', xml)
    return m[1] if m else None


def _truthy(value: str) -> bool:
    return value.lower() in ("on", "true", "yes", "1", "y")


def _num(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


def _short(status: str) -> str:
    """``error (10.77.8.240 answers ping …)`` → the reason when there is one, else the status."""
    m = re.fullmatch(r"[\w ]+? \((.+)\)", status)
    return m[1] if m else status


def convert(lines: Iterable[str], groups: Mapping[str, str] | None = None,
            ping_attributes: Iterable[str] = ()) -> list[ClusterEvent]:
    """Every event of ``lines`` (one node's log lines in time order)."""
    return list(Converter(groups, ping_attributes).convert(lines))


PACEMAKER_LOG = "/var/log/pacemaker/pacemaker.log"


def converter_for(cluster: ClusterSettings) -> Converter:
    """A converter that knows saru.toml's ``[cluster]`` group and ping attribute names."""
    members = (cluster.vipcheck_name, cluster.vip_name, cluster.director_name)
    return Converter({m: cluster.group for m in members}, (cluster.ping_attribute,))


def recent_events(path: str, cluster: ClusterSettings, limit: int = 10, tail_bytes: int = 512 * 1024) -> list[str]:
    """The last ``limit`` events of the end of a Pacemaker log, as lines (``saru status`` in pacemaker
    mode); an unreadable log gives no events."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - tail_bytes))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if size > tail_bytes and lines:
        lines = lines[1:]  # the first line was cut
    return [event.line() for event in converter_for(cluster).convert(lines)][-limit:]
