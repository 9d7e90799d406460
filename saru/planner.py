"""The desired forwarding table as a pure function of the config and the health of the reals.

Rules (ldirectord's, made declarative):

* a real whose check says **up** is in the table with its configured weight and thresholds;
* a real that is **down** is absent, or present with weight 0 when the virtual is ``quiescent``;
* a real whose state is **unknown** (checktype ``off``, or not yet checked) keeps whatever the
  current table has for it — this is how a restart adopts the live table without flapping;
* an operator's override (``saru.model.operator``) comes last: a **disabled** real is absent whatever
  its health; a **drained** real is planned at weight 0, one with an operator **weight** at that
  weight, wherever its health would put it at its configured weight (a quiescent down real stays
  at 0; an adopted one takes the override's weight). A real at weight 0 by an override does not
  count as up for the fallback;
* when no real of a virtual is up, its ``fallback`` server is added with weight 1 (never quiescent)
  — but not while some real still awaits its first verdict (unless the fallback is already in the
  table), so a cold start never flaps the fallback in and out (ldirectord bug W4);
* a virtual in **panic** (``panic_start``: too many of its reals failed together,
  ``panic_threshold``) keeps its last known set: the reals whose checks failed since the panic's
  start (``held``, ``panic_held``) are planned as up, at their weight, as they were before the
  collapse — a quiescent virtual does not zero them, and they count as up for the fallback.

For direct routing and tunnelling the kernel cannot change the destination port, so IPVS (and
ipvsadm) force it to the virtual's port; ``kernel_ports=True`` reproduces that (ldirectord bug W5 is
then harmless because Saru compares the normalised port). A userspace proxy can connect anywhere,
so it plans with the configured port.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from saru.model import (
    Config,
    Dest,
    FallbackConfig,
    Override,
    Overrides,
    RealConfig,
    RealRef,
    Service,
    ServiceKey,
    ServiceSettings,
    Table,
    VirtualConfig,
)
from saru.model.schedflags import canonical as canonical_schedflags

Health = Mapping[RealRef, bool | None]
NO_OVERRIDES: Overrides = {}
NO_HELD: frozenset[RealRef] = frozenset()


def _canonical_netmask(netmask: str | None, ipv6: bool) -> str | None:
    """None for the full mask (what a data plane reads back for "no mask")."""
    if netmask is None:
        return None
    full = netmask.lstrip("/") == "128" if ipv6 else netmask == "255.255.255.255"
    return None if full else netmask


def _canonical_schedflags(schedflags: str | None, scheduler: str) -> str | None:
    """The flags in the order and spelling IPVS reports them (invalid ones: left for the plane to refuse)."""
    return canonical_schedflags(schedflags, scheduler)


def service_settings(virtual: VirtualConfig) -> ServiceSettings:
    """The IPVS service parameters of a virtual (netmask only with persistence, ops only for UDP),
    in the canonical form a data plane reads back, so that an unchanged config plans no edit."""
    persistent = virtual.persistent
    return ServiceSettings(
        scheduler=virtual.scheduler,
        persistent=persistent,
        netmask=_canonical_netmask(virtual.netmask, virtual.ipv6) if persistent is not None else None,
        schedflags=_canonical_schedflags(virtual.schedflags, virtual.scheduler),
        ops=virtual.ops and virtual.protocol == "udp",
    )


def dest_port(virtual: VirtualConfig, forward: str, port: int, kernel_ports: bool) -> int:
    """The destination port as the data plane will hold it."""
    if kernel_ports and forward in ("gate", "ipip") and virtual.protocol != "fwm":
        return virtual.port
    return port


def real_ref(virtual: VirtualConfig, real: RealConfig) -> RealRef:
    """The health identity of a configured real (its configured, not normalised, port)."""
    return RealRef(virtual.key, real.address, real.port)


def real_dest(virtual: VirtualConfig, real: RealConfig, weight: int, kernel_ports: bool) -> Dest:
    return Dest(
        address=real.address,
        port=dest_port(virtual, real.forward, real.port, kernel_ports),
        forward=real.forward,
        weight=weight,
        upper_threshold=real.upper_threshold or 0,
        lower_threshold=real.lower_threshold or 0,
    )


def fallback_dest(virtual: VirtualConfig, fallback: FallbackConfig, kernel_ports: bool) -> Dest:
    return Dest(
        address=fallback.address,
        port=dest_port(virtual, fallback.forward, fallback.port, kernel_ports),
        forward=fallback.forward,
        weight=1,
    )


def plan_service(
    virtual: VirtualConfig,
    health: Health,
    current: Service | None = None,
    kernel_ports: bool = True,
    overrides: Overrides = NO_OVERRIDES,
    held: frozenset[RealRef] = NO_HELD,
) -> Service:
    """The desired service for one virtual (``overrides``: the operator's, by real; ``held``: reals
    whose failure a panic ignores, see ``panic_start``)."""
    current_dests = current.dests if current is not None else {}
    dests: dict[tuple[str, int], Dest] = {}
    any_up = False
    pending = False
    for real in virtual.reals:
        ref = real_ref(virtual, real)
        override: Override | None = overrides.get(ref)
        weight = real.weight if override is None else override.planned_weight(real.weight)
        state = True if virtual.checktype == "on" else health.get(ref)
        if state is False and ref in held:
            state = True  # panic: planned as before the collapse
        if weight is None:  # disabled by the operator: out of the table, whatever its health
            continue
        up_dest = real_dest(virtual, real, weight, kernel_ports)
        if state is True:
            dests[up_dest.key] = up_dest
            any_up = any_up or override is None or weight > 0
        elif state is False:
            if virtual.quiescent:
                dests[up_dest.key] = real_dest(virtual, real, 0, kernel_ports)
        else:
            pending = pending or virtual.checktype != "off"
            adopted = current_dests.get(up_dest.key)
            if adopted is not None:
                if override is not None:
                    adopted = replace(adopted, weight=weight)
                dests[adopted.key] = adopted
                any_up = any_up or adopted.weight > 0
    if not any_up and virtual.fallback is not None:
        fallback = fallback_dest(virtual, virtual.fallback, kernel_ports)
        if not pending or fallback.key in current_dests:
            dests.setdefault(fallback.key, fallback)
    return Service(key=virtual.key, settings=service_settings(virtual), dests=dests)


def desired_table(
    config: Config,
    health: Health,
    current: Table | None = None,
    kernel_ports: bool = True,
    overrides: Overrides = NO_OVERRIDES,
    held: frozenset[RealRef] = NO_HELD,
) -> Table:
    """The whole desired table (only the services the config owns), the operator's overrides applied;
    the reals in ``held`` (a panic's, ``panic_held``) planned as up."""
    services = current.services if current is not None else {}
    return Table.of(
        plan_service(v, health, services.get(v.key), kernel_ports, overrides, held) for v in config.virtuals
    )


def panic_window(virtual: VirtualConfig) -> float:
    """How close together (seconds) the reals of ``virtual`` must have gone down to have "failed
    together": two check rounds, ``2 * (checkinterval + the check timeout)``. A fault of the
    director brings every real down within one round of each other (each real's next checks fail),
    so two rounds hold them all with a margin; reals that died minutes apart did not fail together."""
    timeout = virtual.negotiatetimeout if virtual.checktype in ("negotiate", "combined") else virtual.checktimeout
    return 2.0 * (virtual.checkinterval + timeout)


def panic_counts(virtual: VirtualConfig, failed_since: Mapping[RealRef, float],
                 overrides: Overrides = NO_OVERRIDES) -> tuple[int, list[float]]:
    """``(counted, times)`` for the panic rule: how many of the virtual's reals count (those not
    disabled by the operator) and, for those down because their checks failed (``failed_since``;
    maintenance is not a failure), when each went down."""
    counted, times = 0, []
    for real in virtual.reals:
        ref = real_ref(virtual, real)
        override = overrides.get(ref)
        if override is not None and override.planned_weight(real.weight) is None:
            continue
        counted += 1
        if ref in failed_since:
            times.append(failed_since[ref])
    return counted, times


def panic_start(virtual: VirtualConfig, failed_since: Mapping[RealRef, float], threshold: int,
                started: float | None, known: bool, overrides: Overrides = NO_OVERRIDES) -> float | None:
    """When ``virtual``'s panic started (None: not in panic) — Envoy's panic threshold, made a
    table-keeping rule. ``threshold`` is a percentage (0: never); ``started`` the previous answer.

    * **Enter**: more than ``threshold`` % of the counted reals (``panic_counts``) failed together —
      went down within ``panic_window`` of the latest failure — at least two of them, and a last
      known set exists (``known``: the live table has the virtual; at start, with nothing to keep,
      the checks are believed). The panic starts at the earliest of those failures.
    * **Stay** while more than ``threshold`` % of the counted reals are down, whenever they went down.
    * **Leave** when the share of down reals is back at or under the threshold: planning from the
      checks resumes.
    * **Never** while *every* counted real is down and the virtual has a ``fallback`` server: the
      operator said what a virtual with no real up should serve (ldirectord's sorry server), and
      that explicit answer wins over the heuristic; panic holds the reals only while some are up.

    Meanwhile ``panic_held`` says which reals keep their place. Checktype ``on``/``off`` virtuals
    never panic (nothing is checked). Reals that die one by one (more than ``panic_window`` apart)
    are believed, so a virtual whose reals really died one after the other ends on its fallback."""
    if threshold <= 0 or virtual.checktype in ("on", "off"):
        return None
    counted, times = panic_counts(virtual, failed_since, overrides)
    if counted == 0 or not times or (virtual.fallback is not None and len(times) == counted):
        return None
    if started is not None:
        return started if len(times) * 100 > threshold * counted else None
    latest = max(times)
    together = [t for t in times if t >= latest - panic_window(virtual)]
    if known and len(together) >= 2 and len(together) * 100 > threshold * counted:
        return min(together)
    return None


def panic_held(virtual: VirtualConfig, failed_since: Mapping[RealRef, float], started: float) -> set[RealRef]:
    """The reals of a virtual in panic since ``started`` whose failure is ignored: those that went
    down at or after the start (the collapse, and any failure during the panic); older failures
    stay believed."""
    refs = (real_ref(virtual, real) for real in virtual.reals)
    return {ref for ref in refs if ref in failed_since and failed_since[ref] >= started}


def panic_state(virtuals: Iterable[VirtualConfig], failed_since: Mapping[RealRef, float], threshold: int,
                previous: Mapping[ServiceKey, float], current: Table,
                overrides: Overrides = NO_OVERRIDES) -> tuple[dict[ServiceKey, float], frozenset[RealRef]]:
    """Each of ``virtuals``' panic (``panic_start``, from the ``previous`` answer and the live table
    ``current``): the virtuals in panic → when it started, and the reals whose failure they ignore
    (``desired_table``'s ``held``). The daemon's reconciler and ``saru plan`` both plan with it."""
    panic: dict[ServiceKey, float] = {}
    held: set[RealRef] = set()
    for virtual in virtuals:
        started = panic_start(virtual, failed_since, threshold, previous.get(virtual.key),
                              virtual.key in current.services, overrides)
        if started is not None:
            panic[virtual.key] = started
            held |= panic_held(virtual, failed_since, started)
    return panic, frozenset(held)


def fallback_active(config: Config, table: Table, kernel_ports: bool = True) -> dict[ServiceKey, bool]:
    """For each virtual with a fallback: whether the table currently routes to it."""
    active: dict[ServiceKey, bool] = {}
    for v in config.virtuals:
        if v.fallback is None:
            continue
        service = table.services.get(v.key)
        key = fallback_dest(v, v.fallback, kernel_ports).key
        active[v.key] = service is not None and key in service.dests
    return active
