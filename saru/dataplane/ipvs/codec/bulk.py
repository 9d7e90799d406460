"""Many destination changes of one wrr or mh service, made under a cheap scheduler (pure planning)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import assert_never

from saru.model import AddDest, AddService, DelDest, DelService, EditDest, EditService, Op, ServiceKey, ServiceSettings

__all__ = ["BULK_DEST_OPS", "COSTLY_SCHEDULERS", "with_cheap_scheduler"]


#: Schedulers whose kernel hook rebuilds state over ALL destinations on every destination change
#: (wrr: weights' gcd and maximum, O(N); mh: the 65,521-slot lookup table): N changes cost O(N^2).
COSTLY_SCHEDULERS = frozenset({"wrr", "mh"})
#: Destination changes of one service in one batch from which the scheduler is swapped meanwhile.
BULK_DEST_OPS = 128


def _cheap(settings: ServiceSettings) -> ServiceSettings:
    return replace(settings, scheduler="rr", schedflags=None)


def _is_dest_op(op: Op) -> bool:
    match op:
        case AddDest() | EditDest() | DelDest():
            return True
        case AddService() | EditService() | DelService():
            return False
        case _:
            assert_never(op)


def with_cheap_scheduler(ops: Sequence[Op], current: Mapping[ServiceKey, ServiceSettings]) -> list[Op]:
    """``ops`` with the many destination changes of a wrr or mh service made under ``rr``.

    For a service that gets at least ``BULK_DEST_OPS`` destination changes in this batch and no
    other service op (except an AddService before them), the service runs rr while they are
    applied and gets its own scheduler back right after the last one, which rebuilds that
    scheduler's state once instead of once per change. New connections arriving during the batch
    are scheduled round-robin over the destinations present (mid-batch the table is neither the old
    nor the new one anyway); established connections are not affected. The final table is the
    same. ``current`` gives the settings of existing services (a service not in it is left alone).
    """
    positions: dict[ServiceKey, list[int]] = {}
    for index, op in enumerate(ops):
        positions.setdefault(op.service, []).append(index)
    before: dict[int, Op] = {}
    after: dict[int, Op] = {}
    replaced: dict[int, Op] = {}
    for key, indices in positions.items():
        dest_ops = [i for i in indices if _is_dest_op(ops[i])]
        service_ops = [i for i in indices if not _is_dest_op(ops[i])]
        if len(dest_ops) < BULK_DEST_OPS or len(service_ops) > 1:
            continue
        if service_ops:
            first = ops[service_ops[0]]
            if not isinstance(first, AddService) or service_ops[0] > dest_ops[0]:
                continue
            settings = first.settings
            if settings.scheduler not in COSTLY_SCHEDULERS:
                continue
            replaced[service_ops[0]] = AddService(key, _cheap(settings))
        else:
            found = current.get(key)
            if found is None or found.scheduler not in COSTLY_SCHEDULERS:
                continue
            settings = found
            before[dest_ops[0]] = EditService(key, _cheap(settings))
        after[dest_ops[-1]] = EditService(key, settings)
    if not (before or after):
        return list(ops)
    out: list[Op] = []
    for index, op in enumerate(ops):
        if index in before:
            out.append(before[index])
        out.append(replaced.get(index, op))
        if index in after:
            out.append(after[index])
    return out
