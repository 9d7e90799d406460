"""The HA node: ties VRRP, the floating IP, VIPcheck and the ping score to the director.

VRRP (``saru.ha.vrrp_socket.VRRPInstance``) decides who is master and hands the node each
``saru.ha.vrrp.Transition`` (old and new ``vrrp.State``, a reason, a ``vrrp.Cause``); the node carries
the decision out, keeps its own ``NodeState`` (VRRP's three states and FAULT) and reports it in short
operator sentences (``saru.events``):

* becoming master: VIPcheck (the VRRP veto: if a host other than the VRRP peer answers on a VIP, stay
  backup and name its MAC) → the table is programmed (``set_active(True)``, awaited) → the VIP is
  configured and announced (gratuitous ARP / unsolicited NA). The table goes in before the VIP is
  announced, so no client ever reaches a director that holds the VIP without a table (it would answer
  with a reset); nothing reaches the table before the announce, so this is the guide's order as far
  as any client can tell.
* leaving master (another master won, resign, link down, stop): the VIP is removed, then the table is
  cleared (unless ``warm_standby``). Packets still arriving on our MAC during the handover keep being
  forwarded until the peer's gratuitous ARP moves them.
* the ping score lowers the effective priority (priority - multiplier x unreachable hosts);
  a master that lost its upstream advertises less and the backup takes over (even without preempt).
* the link: when the interface loses carrier the node goes to FAULT (VRRP stopped, VIP removed,
  table cleared, ``notify_fault``); when it comes back, VRRP starts again as backup.
* at start, a VIP left on the interface by a killed previous run is removed before VRRP starts.
* a graceful stop sends a priority-0 advert (the peer takes over after its skew time).
* split brain: another master spoke while we were an established master, or we yielded to one of
  *equal* priority (``Cause.EQUAL_PRIORITY``); resolved when no other master has spoken for a while.
* totals for the metrics (keepalived-exporter's): times this node became master and left it
  (``become_master``, ``release_master``), and the VRRP counters (adverts sent and received…) summed
  over every VRRP instance the node ran (a link that comes back starts a new one).
* while master, every ``vip_check_interval`` seconds (the daemon's ``--drift-interval``) the VIPs are
  looked up on the interface (one netlink address dump, ~1 ms); one removed behind Saru's back
  (``ip addr del`` by hand, a network script) is re-added and announced again (``VIPRestored``).

The primitives (``vip``, ``vipcheck``, ``ping``) are imported when the node starts, so that importing
this module never depends on them; the VRRP instance, the floating IP and the link state come from
``saru.ha.drivers`` factories (``Drivers``), which a test can replace.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypedDict, assert_never

from saru.events import (
    Event,
    HAEvent,
    HAProblem,
    HAStateChange,
    PingChange,
    SplitBrain,
    SplitBrainResolved,
    VIPChange,
    VIPConflict,
    VIPRestored,
)
from saru.events.throttle import Kind, Throttle, default_interval, lasting
from saru.ha.drivers import Drivers, VIPDriver, VRRPDriver
from saru.ha.vrrp import Cause, State, Transition
from saru.model import HASettings
from saru.subproc import last_line, run_command

if TYPE_CHECKING:  # imported at start(): a director without [ha] never loads the HA stack
    from saru.ha.ping import PingScore

LOGGER = logging.getLogger("saru.ha")
WATCH_INTERVAL = 0.05  # link / split-brain / peer watch period (seconds)
NOTIFY_TIMEOUT = 60.0  # seconds a notify command may run before its process group is killed

SetActive = Callable[[bool], Awaitable[None]]
Emit = Callable[[Event], None]


class HACommandError(Exception):
    """A resign/takeover request this node cannot carry out now; ``str()`` says why."""


class PingSnapshot(TypedDict):
    hosts: list[str]
    unreachable: list[str]
    penalty: int
    multiplier: int


class HASnapshot(TypedDict):
    """The ``ha`` control command's answer (and ``status``'s ``ha`` section)."""

    mode: str
    state: str
    reason: str
    since: float
    interface: str
    vrid: int
    primary: str | None
    master: str | None
    priority: int
    effective_priority: int
    advert_interval: float
    master_adver_interval: float | None
    preempt: bool
    warm_standby: bool
    vips: list[str]
    vip_up: bool
    vipcheck: bool
    conflict: dict[str, str] | None
    peer_macs: dict[str, str]
    ping: PingSnapshot | None
    split_brain: bool
    vrrp: dict[str, int]
    become_master: int
    release_master: int
    events: dict[str, int]
    resigned_until: float | None


class NodeState(enum.StrEnum):
    """The node's state: VRRP's (``vrrp.State``), and FAULT: the link is down, VRRP is stopped. A string
    (``"master"``…) as well: it is what ``saru status`` and the notify commands show."""

    INIT = "init"
    BACKUP = "backup"
    MASTER = "master"
    FAULT = "fault"


def notify_argv(settings: HASettings, state: NodeState, priority: int) -> list[list[str]]:
    """The notify commands for a new state, keepalived-like: ``notify`` gets state, VRID, priority."""
    commands: list[list[str]] = []
    match state:
        case NodeState.MASTER:
            specific = settings.notify_master
        case NodeState.BACKUP:
            specific = settings.notify_backup
        case NodeState.FAULT:
            specific = settings.notify_fault
        case NodeState.INIT:
            specific = ()
        case _:
            assert_never(state)
    if specific:
        commands.append(list(specific))
    if settings.notify:
        commands.append([*settings.notify, state.value, str(settings.virtual_router_id), str(priority)])
    return commands


class HANode:
    """One director's side of the pair (see the module docstring)."""

    def __init__(self, settings: HASettings, *, set_active: SetActive, emit: Emit,
                 primary: str | None = None, vip_check_interval: float = 1.0,
                 drivers: Drivers | None = None) -> None:
        self.settings = settings
        self.drivers = drivers or Drivers()
        self.vip_check_interval = vip_check_interval
        self._set_active = set_active
        self._emit_to = emit
        self._primary = primary
        self.instance: VRRPDriver | None = None  # once started
        self.vip: VIPDriver | None = None
        self.ping: PingScore | None = None
        self.state = NodeState.INIT
        self.reason = ""
        self._cause: Cause | None = None  # of the last VRRP transition (None after a fault)
        self.since = time.time()
        self.counters: dict[str, int] = {}
        self.become_master = 0
        self.release_master = 0
        self._retired: dict[str, int] = {}  # VRRP counters of the instances this node ran before
        self.vip_up = False
        self.conflict: dict[str, str] | None = None
        self._probe_failures = Throttle(default_interval())  # VIPcheck probes that fail, retried every 0.36 s
        self.peer_macs: dict[str, str] = {}  # VRRP peer address -> MAC (ignored by VIPcheck)
        self.last_master: str | None = None
        self.resign_until = 0.0
        self._unreachable: list[str] = []
        self._split = False
        self._split_seen = 0
        self._split_last = 0.0
        self._watch: asyncio.Task[None] | None = None
        self._vip_watch: asyncio.Task[None] | None = None
        self._learning: asyncio.Task[None] | None = None
        self._notify: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()  # transitions, fault handling and stop never interleave
        self._stopping = False
        self._restart_error = ""
        self.notify_timeout = NOTIFY_TIMEOUT

    # -- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Clean a stale VIP, start the ping score, then VRRP (as backup)."""
        s = self.settings
        self.vip = self.drivers.vip(s)
        stale = await self._present()
        if stale:
            await self.vip.remove()
            self.emit(VIPChange(addresses=tuple(stale), interface=s.interface, up=False,
                                detail="left by a previous run that did not stop cleanly"))
        if s.ping is not None and s.ping.hosts:
            from saru.ha.ping import PingScore

            self.ping = PingScore(s.ping, self._ping_changed)
            await self.ping.start()
        self._watch = asyncio.create_task(self._watch_loop(), name="ha-watch")
        if self.vip_check_interval > 0:
            self._vip_watch = asyncio.create_task(self._vip_loop(), name="ha-vip-watch")
        if self.drivers.link(s.interface) is False:
            await self._fault(f"link of {s.interface} is down at start")
            return
        await self._start_vrrp()

    async def _start_vrrp(self) -> None:
        self.instance = self.drivers.vrrp(self.settings, primary=self._primary, on_transition=self._on_transition,
                                          before_master=self._before_master)
        self.instance.set_priority(self.effective_priority)
        self._split_seen = 0  # a new instance counts from zero
        await self.instance.start()
        self._primary = self.instance.primary
        for peer in self.settings.unicast_peers:
            self._learn_peer(peer)

    async def stop(self, graceful: bool = True) -> None:
        """Leave: priority-0 advert (graceful), VIP removed, table cleared; ping and watchers stopped."""
        self._stopping = True
        for watcher in (self._watch, self._vip_watch):
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        for task in (self._learning,):
            if task is not None:
                task.cancel()
        if self.instance is not None:
            await self.instance.stop(graceful=graceful)  # delivers the INIT transition (VIP, table)
            self._retire(self.instance)
            self.instance = None
        async with self._lock:
            await self._release("stopping")
        if self.ping is not None:
            await self.ping.stop()
        if self._notify:
            await asyncio.wait(self._notify, timeout=5)

    # -- commands ---------------------------------------------------------------------------------

    def resign(self, hold: float) -> None:
        """Hand the VIP to the peer and refuse it back for ``hold`` seconds; HACommandError unless master."""
        if self.instance is None or self.state is not NodeState.MASTER:
            raise HACommandError(f"this node is {self.state.value.upper()}, not MASTER: nothing to resign")
        self.resign_until = time.time() + hold
        self.instance.resign(hold)

    def takeover(self) -> None:
        """Become master now; HACommandError when VRRP is not running."""
        if self.instance is None:
            raise HACommandError(f"this node is {self.state.value.upper()}: VRRP is not running")
        self.resign_until = 0.0
        self.instance.takeover()

    @property
    def effective_priority(self) -> int:
        penalty = self.ping.penalty if self.ping is not None else 0
        return max(1, min(254, self.settings.priority - penalty))

    def snapshot(self) -> HASnapshot:
        """The ``ha`` control command's answer (and ``status``'s ``ha`` section)."""
        s = self.settings
        inst = self.instance
        counters = dict(self._retired)
        for key, value in (inst.counters if inst is not None else {}).items():
            counters[key] = counters.get(key, 0) + value
        master = inst.master_address if inst is not None else None
        machine = inst.machine if inst is not None else None
        return {
            "mode": s.mode,
            "state": self.state.value,
            "reason": self.reason,
            "since": self.since,
            "interface": s.interface,
            "vrid": s.virtual_router_id,
            "primary": self._primary,
            "master": master,
            "priority": s.priority,
            "effective_priority": self.effective_priority,
            "advert_interval": s.advert_interval,
            "master_adver_interval": machine.master_adver_interval if machine is not None else None,
            "preempt": s.preempt,
            "warm_standby": s.warm_standby,
            "vips": [str(v) for v in s.vips],
            "vip_up": self.vip_up,
            "vipcheck": s.vipcheck,
            "conflict": self.conflict,
            "peer_macs": dict(self.peer_macs),
            "ping": None if self.ping is None else {
                "hosts": list(s.ping.hosts) if s.ping else [],
                "unreachable": list(self._unreachable),
                "penalty": self.ping.penalty,
                "multiplier": s.ping.multiplier if s.ping else 0,
            },
            "split_brain": self._split,
            "vrrp": counters,
            "become_master": self.become_master,
            "release_master": self.release_master,
            "events": dict(self.counters),
            "resigned_until": self.resign_until if self.resign_until > time.time() else None,
        }

    # -- events -----------------------------------------------------------------------------------

    def emit(self, event: HAEvent) -> None:
        self.counters[event.kind] = self.counters.get(event.kind, 0) + 1
        self._emit_to(event)

    def _set_state(self, state: NodeState, reason: str, cause: Cause) -> None:
        self._count_mastership(state)
        self.state, self.reason, self._cause, self.since = state, reason, cause, time.time()
        self.emit(HAStateChange(state=state.value, reason=reason, vrid=self.settings.virtual_router_id,
                                priority=self.effective_priority))
        self._run_notify(state)

    def _count_mastership(self, new: NodeState) -> None:
        """Count becoming master and leaving it (keepalived's become/release master totals)."""
        if new is NodeState.MASTER and self.state is not NodeState.MASTER:
            self.become_master += 1
        elif new is not NodeState.MASTER and self.state is NodeState.MASTER:
            self.release_master += 1

    def _retire(self, inst: VRRPDriver) -> None:
        """Keep the counters of a VRRP instance the node is done with (the totals span instances)."""
        for key, value in inst.counters.items():
            self._retired[key] = self._retired.get(key, 0) + value

    def _run_notify(self, state: NodeState) -> None:
        for argv in notify_argv(self.settings, state, self.effective_priority):
            task = asyncio.create_task(self._exec(argv))
            self._notify.add(task)
            task.add_done_callback(self._notify.discard)

    async def _exec(self, argv: Sequence[str]) -> None:
        """One notify command (``saru.subproc``): past ``notify_timeout`` its whole process group is
        ended, children included."""
        try:
            outcome = await run_command(argv, self.notify_timeout)
        except OSError as exc:
            self.emit(HAProblem(text=f"notify command {argv[0]} failed: {exc}"))
            return
        if outcome.timed_out:
            self.emit(HAProblem(text=f"notify command {argv[0]} killed after {self.notify_timeout:g}s"))
        elif outcome.returncode:
            detail = last_line(outcome.stderr)
            self.emit(HAProblem(text=f"notify command {argv[0]} exited with status {outcome.returncode}"
                                     + (f": {detail}" if detail else "")))

    # -- VRRP callbacks ---------------------------------------------------------------------------

    async def _before_master(self) -> bool:
        """VIPcheck: refuse mastership while a host other than our VRRP peer answers on a VIP."""
        if not self.settings.vipcheck:
            return True
        from saru.ha.vipcheck import probe_vip

        ignore = tuple(self.peer_macs.values())
        timeout = self.settings.vipcheck_timeout
        answers = await asyncio.gather(*(probe_vip(self.settings.interface, addr, timeout, ignore_macs=ignore)
                                         for addr in self.settings.vip_addresses), return_exceptions=True)
        for addr, answer in zip(self.settings.vip_addresses, answers, strict=True):
            if isinstance(answer, BaseException):
                now = time.monotonic()
                decision = self._probe_failures.observe(addr, str(answer), now)
                if decision is not None and decision.kind is Kind.REMINDER:
                    self.emit(HAProblem(text=f"VIPcheck of {addr} still failing ({answer}): {decision.count} times "
                                             f"since the last message, for {lasting(now - decision.since)}; "
                                             "not taking the VIP"))
                elif decision is not None:
                    self.emit(HAProblem(text=f"VIPcheck of {addr} failed ({answer}); not taking the VIP"))
                return False
            self._probe_failures.clear(addr, time.monotonic())
            if answer is not None and await self._is_peer_mac(answer.mac):
                continue  # the VRRP peer (a killed daemon leaves its VIP; a preempted master still has it)
            if answer is not None:
                conflict = {"address": addr, "mac": answer.mac, "method": answer.method}
                if conflict != self.conflict:  # one event per conflict, not one per retry
                    self.emit(VIPConflict(address=addr, mac=answer.mac, method=answer.method))
                self.conflict = conflict
                return False
        self.conflict = None
        return True

    async def _on_transition(self, change: Transition) -> None:
        async with self._lock:
            match change.new:
                case State.MASTER:
                    await self._become_master(change)
                case State.BACKUP:
                    if change.old is State.MASTER or self.vip_up:
                        await self._release(change.reason)
                    self._set_state(NodeState.BACKUP, change.reason, change.cause)
                case State.INIT:  # stopped
                    await self._release(change.reason)
                    if not self._stopping and self.state is NodeState.FAULT:
                        return
                    self._set_state(NodeState.INIT, change.reason, change.cause)
                case _:
                    assert_never(change.new)

    async def _become_master(self, change: Transition) -> None:
        """The guide's order: (VIPcheck already passed) → VIP → table → gratuitous ARP / NA.

        The address is configured before the table (the proxy plane binds to it), but announced only
        once the table is programmed, so no client is steered here before we can serve it."""
        vip = self.vip
        assert vip is not None, "start() creates the floating IP before VRRP runs"
        vip_ok = True
        try:
            await vip.add(announce=False)
            self.vip_up = True
        except Exception as exc:
            vip_ok = False
            self.emit(HAProblem(text=f"cannot configure the floating IP: {exc}"))
            self._run_notify(NodeState.FAULT)
        try:
            await self._set_active(True)
        except Exception as exc:  # the table could not be programmed: say so, but hold the VIP anyway
            self.emit(HAProblem(text=f"programming the table on becoming master failed: {exc}"))
        if vip_ok:
            try:
                await vip.announce()
                self.emit(VIPChange(addresses=self.settings.vip_addresses, interface=self.settings.interface,
                                    up=True, detail=f"announced {self.settings.garp_repeat}x"))
            except Exception as exc:
                self.emit(HAProblem(text=f"cannot announce the floating IP: {exc}"))
        self._set_state(NodeState.MASTER, change.reason, change.cause)

    async def _release(self, reason: str) -> None:
        """VIP removed, then the table cleared (the daemon keeps it when warm_standby)."""
        if self.vip is not None and (self.vip_up or await self._present()):
            try:
                await self.vip.remove()
                self.emit(VIPChange(addresses=self.settings.vip_addresses, interface=self.settings.interface,
                                    up=False, detail=reason))
            except Exception as exc:
                self.emit(HAProblem(text=f"cannot remove the floating IP: {exc}"))
            self.vip_up = False
        try:
            await self._set_active(False)
        except Exception as exc:
            self.emit(HAProblem(text=f"clearing the table failed: {exc}"))

    async def _present(self) -> list[str]:
        try:
            return await self.vip.present() if self.vip is not None else []
        except Exception as exc:
            LOGGER.debug("cannot read the addresses of %s: %s", self.settings.interface, exc)
            return []

    # -- ping score -------------------------------------------------------------------------------

    def _ping_changed(self, _penalty: int) -> None:
        if self.ping is None:
            return
        now = list(self.ping.unreachable())
        before = self._unreachable
        self._unreachable = now
        priority, penalty = self.effective_priority, self.ping.penalty
        for host in (h for h in now if h not in before):
            self.emit(PingChange(host=host, reachable=False, priority=priority, penalty=penalty))
        for host in (h for h in before if h not in now):
            self.emit(PingChange(host=host, reachable=True, priority=priority, penalty=penalty))
        if self.instance is not None:
            self.instance.set_priority(priority)

    # -- watchers: link, split brain, the peer's MAC ------------------------------------------------

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                await self._watch_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                LOGGER.exception("HA watcher failed")

    async def _watch_once(self) -> None:
        link = self.drivers.link(self.settings.interface)
        if link is False and self.state is not NodeState.FAULT:
            await self._fault(f"link of {self.settings.interface} is down")
        elif link and self.state is NodeState.FAULT:
            if not self._restart_error:
                LOGGER.info("HA: link of %s is up again; rejoining as BACKUP", self.settings.interface)
            async with self._lock:
                self.state = NodeState.INIT
            try:
                await self._start_vrrp()
            except Exception as exc:  # e.g. the address is not back yet: try again on the next tick
                if self.instance is not None:
                    self._retire(self.instance)
                self.instance = None
                self.state = NodeState.FAULT
                if str(exc) != self._restart_error:  # once per distinct error, not every tick
                    self._restart_error = str(exc)
                    self.emit(HAProblem(text=f"cannot restart VRRP on {self.settings.interface}: {exc}"))
                return
            self._restart_error = ""
        inst = self.instance
        if inst is None:
            return
        master = inst.master_address
        if master and master != self._primary:
            self.last_master = master
        for address in self._sources() - set(self.peer_macs):
            self._learn_peer(address)
            break
        seen = inst.counters.get("other_master_seen", 0)
        now = time.monotonic()
        if seen > self._split_seen:  # counted only while master: we were master when another one spoke
            if not self._split and self._looks_split(inst):
                self._split = True
                other = inst.master_address if inst.master_address != self._primary else None
                self.emit(SplitBrain(vrid=self.settings.virtual_router_id, interface=self.settings.interface,
                                     peer=other))
            self._split_seen, self._split_last = seen, now
        elif self._split and now - self._split_last > max(0.5, 4 * self.settings.advert_interval):
            self._split = False
            self.emit(SplitBrainResolved(vrid=self.settings.virtual_router_id, master=inst.master_address))

    async def _vip_loop(self) -> None:
        while True:
            await asyncio.sleep(self.vip_check_interval)
            try:
                await self._check_vip()
            except asyncio.CancelledError:
                raise
            except Exception:
                LOGGER.exception("HA: VIP check failed")

    async def _missing_vips(self) -> list[str]:
        """The configured VIPs not on the interface (empty when it cannot be read: nothing to fix)."""
        if self.vip is None:
            return []
        try:
            present = await self.vip.present()
        except Exception as exc:
            LOGGER.debug("cannot read the addresses of %s: %s", self.settings.interface, exc)
            return []
        return [a for a in self.settings.vip_addresses if a not in present]

    async def _check_vip(self) -> None:
        """Master: are the VIPs still on the interface? Re-add and announce the missing ones."""
        if self.state is not NodeState.MASTER or not self.vip_up or not await self._missing_vips():
            return
        async with self._lock:  # not while a transition adds or removes the VIP
            if self.state is not NodeState.MASTER or not self.vip_up or self._stopping or self.vip is None:
                return
            missing = await self._missing_vips()
            if not missing:
                return
            try:
                await self.vip.add(announce=True)
            except Exception as exc:
                self.emit(HAProblem(text=f"cannot re-add the floating IP {', '.join(missing)} "
                                         f"to {self.settings.interface}: {exc}"))
                return
            self.emit(VIPRestored(addresses=tuple(missing), interface=self.settings.interface))

    def _looks_split(self, inst: VRRPDriver) -> bool:
        """Another master spoke while we were master: a split brain, or just a handover's overlap?

        A handover (ping degradation, takeover, preempt) makes two masters for one advert: the old one
        yields at once to the higher priority, the new one has been master for a moment only. A split
        brain is an established master hearing another one, or a master yielding to an equal priority.
        """
        if self.state is NodeState.MASTER:
            machine = inst.machine
            master_down = machine.master_down if machine is not None else 3.5 * self.settings.advert_interval
            return time.time() - self.since > master_down + 0.5
        return self._cause is Cause.EQUAL_PRIORITY

    def _sources(self) -> set[str]:
        """Addresses of the other VRRP routers we know: configured peers, the master, every advert source."""
        inst = self.instance
        found = set(self.settings.unicast_peers)
        if inst is not None:
            if inst.master_address:
                found.add(inst.master_address)
            found.update(inst.sources)
        found.discard(self._primary or "")
        return found

    async def _is_peer_mac(self, mac: str) -> bool:
        """Whether ``mac`` is a VRRP peer's (learning the peers' MACs now if needed)."""
        if mac in self.peer_macs.values():
            return True
        for address in self._sources() - set(self.peer_macs):
            await self._learn(address)
        return mac in self.peer_macs.values()

    def _learn_peer(self, address: str) -> None:
        """Find a VRRP peer's MAC in the background, so that VIPcheck ignores it."""
        if self._learning is not None and not self._learning.done():
            return
        self._learning = asyncio.create_task(self._learn(address), name="ha-learn-peer")

    async def _learn(self, address: str) -> None:
        """The MAC of ``address``: the neighbour table, else an ARP probe / neighbour solicitation."""
        from saru.ha.vipcheck import neighbour_mac, probe_vip

        mac = None
        with contextlib.suppress(Exception):
            mac = await neighbour_mac(self.settings.interface, address)
        if not mac:
            with contextlib.suppress(Exception):
                answer = await probe_vip(self.settings.interface, address, max(0.2, self.settings.vipcheck_timeout))
                mac = answer.mac if answer is not None else None
        if mac:
            self.peer_macs[address] = str(mac)

    async def _fault(self, reason: str) -> None:
        inst, self.instance = self.instance, None
        async with self._lock:
            self._count_mastership(NodeState.FAULT)
            self.state = NodeState.FAULT
        if inst is not None:
            await inst.stop(graceful=False)  # the INIT transition releases the VIP and the table
            self._retire(inst)
        async with self._lock:
            await self._release(reason)
            self.state, self.reason, self._cause, self.since = NodeState.FAULT, reason, None, time.time()
            self.emit(HAStateChange(state=NodeState.FAULT.value, reason=reason, vrid=self.settings.virtual_router_id,
                                    priority=self.effective_priority))
            self._run_notify(NodeState.FAULT)
