"""Typed events: what happened to reals, virtuals, the daemon and the HA node; the sinks render them.

The monitor emits health events (``RealUp``, ``RealDown``, ``SoftFailure``, ``FailuresReset``);
the daemon emits table events (``TableChange``) and lifecycle events. ``message()`` renders each in
ldirectord's log vocabulary so that operators' log scrapers keep working.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from saru.model import Dest, RealRef, ServiceKey


@dataclass(frozen=True)
class Event:
    """Base of every event; ``at`` is wall-clock time; ``level``: how the daemon logs it."""

    at: float = field(default_factory=time.time, kw_only=True)
    level = logging.INFO

    def message(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class RealUp(Event):
    """A real's check passes again (after ``rise`` successes)."""

    real: RealRef
    detail: str = ""

    def message(self) -> str:
        return f"Real server up: {self.real}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class RealDown(Event):
    """A real's check failed ``failurecount`` times in a row (or it entered maintenance)."""

    real: RealRef
    detail: str = ""

    def message(self) -> str:
        return f"Real server down: {self.real}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class SoftFailure(Event):
    """A check failed while the real is up, but fewer than ``failurecount`` times in a row."""

    real: RealRef
    count: int
    limit: int
    detail: str = ""

    def message(self) -> str:
        return f"Soft failure real server: {self.real} failure {self.count}/{self.limit}"


@dataclass(frozen=True)
class FailuresReset(Event):
    """A check succeeded after soft failures."""

    real: RealRef

    def message(self) -> str:
        return f"Resetting soft failure count: {self.real}"


#: verbs of ldirectord's table log lines
TABLE_VERBS = ("Added", "Restored", "Quiescent", "Deleted", "Changed", "Purged")


@dataclass(frozen=True)
class RealStillDown(Event):
    """A real stays down: its failure changed (``changed``) or a reminder (at most one a minute,
    ``saru.events.throttle``) with the ``count`` of failed checks since the last line."""

    real: RealRef
    detail: str
    count: int
    lasting: str
    changed: bool = False

    def message(self) -> str:
        if self.changed:
            return f"Real server still down: {self.real}: now {self.detail} (down for {self.lasting})"
        return (f"Real server still down: {self.real}: {self.detail} ({self.count} failed checks since the "
                f"last message, down for {self.lasting})")


@dataclass(frozen=True)
class LocalFault(Event):
    """Checks fail for a reason local to the director (``saru.checks.base.local_fault``): the reals
    keep their state. ``phase``: "start", "change" (another reason or real) or "reminder"."""

    level = logging.ERROR
    reason: str
    real: RealRef
    detail: str
    phase: str = "start"
    count: int = 1
    lasting: str = ""

    def message(self) -> str:
        if self.phase == "reminder":
            return (f"ALARM: local fault ({self.reason}) persists for {self.lasting}: {self.count} checks could "
                    f"not run since the last message (last: {self.real}: {self.detail}); reals keep their state")
        return (f"ALARM: local fault ({self.reason}): the director cannot check {self.real}: {self.detail}; "
                "the reals keep their state until checks run again")


@dataclass(frozen=True)
class LocalFaultCleared(Event):
    """The checks that failed locally (``reason``) run again."""

    reason: str
    count: int
    lasting: str

    def message(self) -> str:
        return (f"Local fault ({self.reason}) cleared after {self.lasting}: checks run again "
                f"({self.count} checks could not run)")


@dataclass(frozen=True)
class PanicMode(Event):
    """``panic_threshold``: too many of a virtual's reals failed together; its table is kept as it
    was (``entered``), or the virtual's reals are healthy enough again and planning resumes."""

    level = logging.WARNING
    virtual: ServiceKey
    entered: bool
    down: int
    counted: int
    threshold: int

    def message(self) -> str:
        if self.entered:
            return (f"ALARM: panic mode for {self.virtual}: {self.down} of {self.counted} reals failed together "
                    f"(panic_threshold {self.threshold}%); keeping the last known table for it")
        return (f"Panic mode over for {self.virtual}: {self.down} of {self.counted} reals down; "
                "planning its table from the checks again")


@dataclass(frozen=True)
class TableChange(Event):
    """A change the daemon applied to the data plane, in ldirectord's words.

    ``verb`` is one of TABLE_VERBS; ``kind`` is "real", "fallback" or "virtual".
    """

    verb: str
    kind: str
    service: ServiceKey
    dest: Dest | None = None

    def message(self) -> str:
        if self.kind == "virtual" or self.dest is None:
            return f"{self.verb} virtual server: {self.service.hostport}"
        text = f"{self.verb} {self.kind} server: {self.dest.hostport} ({self.service.hostport})"
        if self.verb in ("Added", "Restored", "Quiescent", "Changed"):
            text += f" (Weight set to {self.dest.weight})"
        return text


@dataclass(frozen=True)
class DaemonEvent(Event):
    """Lifecycle: starting, reloading, stopping, config errors kept old config, …"""

    text: str

    def message(self) -> str:
        return self.text


@dataclass(frozen=True)
class ConfigReloaded(Event):
    """A reload read the config (and saru.toml) and put it in force."""

    path: str
    reloads: int
    warnings: tuple[str, ...] = ()

    def message(self) -> str:
        text = f"Configuration reloaded from {self.path} (reload {self.reloads})"
        return text + (f": {len(self.warnings)} warning(s)" if self.warnings else "")


@dataclass(frozen=True)
class ReloadFailed(Event):
    """A reload found errors (``FILE:LINE: …`` each): the running config is kept."""

    level = logging.ERROR
    path: str
    errors: tuple[str, ...]
    #: a reminder (``saru.events.throttle``): the same errors this many times since the last message
    repeated: int = 0
    lasting: str = ""

    def message(self) -> str:
        if self.repeated:
            return (f"Error reading configuration, still the same errors ({self.repeated} failed reloads since "
                    f"the last message, failing for {self.lasting}), keeping the running one:\n"
                    + "\n".join(self.errors))
        return "Error reading configuration, keeping the running one:\n" + "\n".join(self.errors)


@dataclass(frozen=True)
class OperatorAction(Event):
    """An operator drained, disabled, enabled or re-weighted a real (``origin``: which front door,
    ``kept``: where the override is kept across reloads and restarts)."""

    level = logging.WARNING
    action: str  # drain, disable, enable, weight
    real: RealRef
    weight: int | None = None
    origin: str = ""
    kept: str = ""

    def message(self) -> str:
        what = {"drain": "drained (weight 0, existing connections stay)",
                "disable": "disabled (out of the table)",
                "enable": "enabled (back at its configured weight once its check passes)",
                "weight": f"weight set to {self.weight}"}.get(self.action, self.action)
        text = f"Operator: real server {self.real} {what}"
        if self.origin:
            text += f" by {self.origin}"
        return text + (f"; kept in {self.kept}" if self.kept else "")


@dataclass(frozen=True)
class TableDrift(Event):
    """The kernel's table was not what the data plane applied: changed behind Saru's back
    (``found_by``: the periodic check, status, plan or reload), and re-applied."""

    level = logging.WARNING
    dataplane: str
    found_by: str
    detail: str
    repaired: bool = True
    error: str = ""

    def message(self) -> str:
        text = f"Table drift on the {self.dataplane} data plane (found by {self.found_by}): {self.detail}"
        return text + ("; re-applied Saru's table" if self.repaired else f"; repair FAILED: {self.error}")


# --------------------------------------------------------------------------------------------------
# high availability (saru.ha.node): short operator sentences, one line each
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HAEvent(Event):
    """Base of the HA node's events; ``kind`` names the counter ``saru status`` shows."""

    kind = "ha"


@dataclass(frozen=True)
class HAStateChange(HAEvent):
    """The node became master or backup (or stopped speaking VRRP)."""

    kind = "transitions"
    state: str  # "master", "backup", "init"
    reason: str
    vrid: int
    priority: int

    def message(self) -> str:
        if self.state == "init":
            return f"HA: left the virtual router {self.vrid} ({self.reason})"
        return f"HA: became {self.state.upper()} of virtual router {self.vrid} at priority {self.priority}: " \
               f"{self.reason}"


@dataclass(frozen=True)
class VIPChange(HAEvent):
    """The floating IP was configured (and announced) or removed."""

    kind = "vip_changes"
    addresses: tuple[str, ...]
    interface: str
    up: bool
    detail: str = ""

    def message(self) -> str:
        what = ", ".join(self.addresses)
        verb = "up" if self.up else "down"
        return f"HA: floating IP {what} {verb} on {self.interface}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class VIPRestored(HAEvent):
    """While master, a floating IP vanished from the interface (removed by hand): re-added and announced."""

    kind = "vip_restored"
    level = logging.WARNING
    addresses: tuple[str, ...]
    interface: str

    def message(self) -> str:
        what = ", ".join(self.addresses)
        return (f"HA: floating IP {what} was removed from {self.interface} behind Saru's back while MASTER; "
                "re-added and announced")


@dataclass(frozen=True)
class VIPConflict(HAEvent):
    """VIPcheck: another host answers on the floating IP, so this node stays backup."""

    kind = "vip_conflicts"
    address: str
    mac: str
    method: str

    def message(self) -> str:
        return (f"HA: VIPcheck: {self.address} already answers {self.method} from {self.mac}; "
                "staying BACKUP (remove the address from that host)")


@dataclass(frozen=True)
class PingChange(HAEvent):
    """An upstream host of the ping score was lost or is back; the effective priority changed."""

    kind = "ping_changes"
    host: str
    reachable: bool
    priority: int
    penalty: int

    def message(self) -> str:
        state = "reachable again" if self.reachable else "unreachable"
        return f"HA: upstream {self.host} {state}; effective priority now {self.priority} (penalty {self.penalty})"


@dataclass(frozen=True)
class SplitBrain(HAEvent):
    """While master, this node received another master's adverts (both held the VIP)."""

    kind = "split_brains"
    vrid: int
    interface: str
    peer: str | None = None

    def message(self) -> str:
        who = f"{self.peer} " if self.peer else "another router "
        return f"HA: split brain: {who}is also MASTER of virtual router {self.vrid} on {self.interface}"


@dataclass(frozen=True)
class SplitBrainResolved(HAEvent):
    """After a split brain, one master again."""

    kind = "split_brains_resolved"
    vrid: int
    master: str | None

    def message(self) -> str:
        return f"HA: split brain resolved: one master ({self.master or 'unknown'}) for virtual router {self.vrid}"


@dataclass(frozen=True)
class HAProblem(HAEvent):
    """Something the node could not do (VIP add failed, notify command failed, …)."""

    kind = "errors"
    text: str

    def message(self) -> str:
        return f"HA: {self.text}"
