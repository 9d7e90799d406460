"""Many destination changes of one wrr or mh service, made under a cheap scheduler (pure planning)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from saru.model import AddDest, AddService, DelDest, EditDest, EditService, Op, ServiceKey, ServiceSettings

__all__ = ["BULK_DEST_OPS", "COSTLY_SCHEDULERS", "with_cheap_scheduler"]


#: Schedulers whose kernel hook rebuilds state over ALL destinations on every destination change
#: (wrr: weights' gcd and maximum, O(N); mh: the 65,521-slot lookup table): N changes cost O(N^2).
COSTLY_SCHEDULERS = frozenset({"wrr", "mh"})
#: Destination changes of one service in one batch from which the scheduler is swapped meanwhile.
BULK_DEST_OPS = 128


def _cheap(settings: ServiceSettings) -> ServiceSettings:
    return replace(settings, scheduler="rr", schedflags=None)


_DEST_OPS = (AddDest, EditDest, DelDest)


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
    last: ServiceKey | None = None
    run: list[int] = []
    for index, op in enumerate(ops):
        key = op.service
        if key is not last:  # ops of one service come in runs: hash its key once per run
            run = positions.setdefault(key, [])
            last = key
        run.append(index)
    before: dict[int, Op] = {}
    after: dict[int, Op] = {}
    replaced: dict[int, Op] = {}
    for key, indices in positions.items():
        if len(indices) < BULK_DEST_OPS:
            continue
        service_ops = [i for i in indices if not isinstance(ops[i], _DEST_OPS)]
        if len(service_ops) > 1:
            continue
        dest_ops = [i for i in indices if isinstance(ops[i], _DEST_OPS)] if service_ops else indices
        if len(dest_ops) < BULK_DEST_OPS:
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
    out: list[Op] = list(ops)
    for index in sorted(before.keys() | after.keys() | replaced.keys(), reverse=True):  # a few
        if index in after:
            out.insert(index + 1, after[index])
        if index in replaced:
            out[index] = replaced[index]
        if index in before:
            out.insert(index, before[index])
    return out
