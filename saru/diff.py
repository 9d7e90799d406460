"""Minimal operations between two forwarding tables, and their pure application.

``diff(current, desired, owned)`` returns the ops that turn ``current`` into ``desired`` for the
services Saru owns; services in ``current`` that are neither desired nor owned (another tool's)
are never touched. ``apply_ops(table, ops)`` is the reference semantics every data plane follows,
used by the planner tests (``apply_ops(a, diff(a, b)) == b``) and by ``saru plan``.

Order matters for traffic: new services and new or changed destinations come before removals, so
a virtual moving from its fallback to a real never has an empty moment.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from typing import assert_never

from saru.model import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    Dest,
    EditDest,
    EditService,
    Op,
    Service,
    ServiceKey,
    Table,
)


class OpError(ValueError):
    """An op does not fit the table it is applied to (e.g. adding a dest that exists)."""


def _dest_ops(current: Service | None, desired: Service) -> list[Op]:
    have = current.dests if current is not None else {}
    adds: list[Op] = []
    edits: list[Op] = []
    for key in sorted(desired.dests):
        dest = desired.dests[key]
        old = have.get(key)
        if old is None:
            adds.append(AddDest(desired.key, dest))
        elif old != dest:
            edits.append(EditDest(desired.key, dest))
    dels: list[Op] = [DelDest(desired.key, a, p) for (a, p) in sorted(have) if (a, p) not in desired.dests]
    return adds + edits + dels


def _sorted_keys(keys: Iterable[ServiceKey]) -> list[ServiceKey]:
    return sorted(keys, key=lambda k: (k.protocol, k.family, k.address, k.port, k.fwmark or 0))


def diff(current: Table, desired: Table, owned: Collection[ServiceKey] | None = None) -> list[Op]:
    """Ops turning ``current`` into ``desired``.

    ``owned`` lists the services Saru may delete when they are not desired (the keys of the old and
    new config); ``None`` means every service of ``current`` is Saru's.
    """
    ops: list[Op] = []
    for key in _sorted_keys(desired.services):
        want = desired.services[key]
        have = current.services.get(key)
        if have is None:
            ops.append(AddService(key, want.settings))
        elif have.settings != want.settings:
            ops.append(EditService(key, want.settings))
        ops.extend(_dest_ops(have, want))
    for key in _sorted_keys(current.services):
        if key not in desired.services and (owned is None or key in owned):
            ops.append(DelService(key))
    return ops


def apply_ops(table: Table, ops: Sequence[Op]) -> Table:
    """The table after ``ops`` (raises OpError and leaves ``table`` untouched on a bad op).

    Linear in the number of ops: each touched service's destinations are copied once.
    """
    services = dict(table.services)
    working: dict[ServiceKey, dict[tuple[str, int], Dest]] = {}

    def dests(key: ServiceKey) -> dict[tuple[str, int], Dest]:
        if key not in working:
            working[key] = dict(services[key].dests)
        return working[key]

    # fast path: a run of destination ops of one service (the bulk of a big apply) looks the
    # service up once, not once per op (hashing a ServiceKey is the cost)
    last: ServiceKey | None = None
    current: dict[tuple[str, int], Dest] = {}
    for op in ops:
        key = op.service
        if key is last and isinstance(op, (AddDest, EditDest)):
            dest = op.dest
            exists = dest.key in current
            if exists and isinstance(op, AddDest):
                raise OpError(f"destination {dest.hostport} already exists in {key}")
            if not exists and isinstance(op, EditDest):
                raise OpError(f"no destination {dest.hostport} in {key}")
            current[dest.key] = dest
            continue
        last = None
        if key not in services and not isinstance(op, AddService):
            raise OpError(f"no such service {key}")
        match op:
            case AddService(settings=settings):
                if key in services:
                    raise OpError(f"service {key} already exists")
                services[key] = Service(key=key, settings=settings, dests={})
                working[key] = {}
            case EditService(settings=settings):
                services[key] = replace(services[key], settings=settings)
            case DelService():
                del services[key]
                working.pop(key, None)
            case AddDest(dest=dest):
                current = dests(key)
                if dest.key in current:
                    raise OpError(f"destination {dest.hostport} already exists in {key}")
                current[dest.key] = dest
                last = key
            case EditDest(dest=dest):
                current = dests(key)
                if dest.key not in current:
                    raise OpError(f"no destination {dest.hostport} in {key}")
                current[dest.key] = dest
                last = key
            case DelDest(address=address, port=port):
                if (address, port) not in dests(key):
                    raise OpError(f"no destination {address}:{port} in {key}")
                del dests(key)[(address, port)]
            case _:
                assert_never(op)
    for key, final in working.items():
        services[key] = replace(services[key], dests=final)
    return Table(services)
