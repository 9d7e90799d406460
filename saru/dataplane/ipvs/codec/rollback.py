"""Undoing a half-applied IPVS batch: IPVS has no transactions, so Saru plans the inverse ops (pure).

``needs_snapshot`` says which services must be known before a batch to undo it; ``rollback_plan``
gives the ops that undo the ops that succeeded, last first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import assert_never

from saru.model import AddDest, AddService, DelDest, DelService, Dest, EditDest, EditService, Op, Service, ServiceKey

__all__ = ["inverses", "needs_snapshot", "rollback_plan"]


def needs_snapshot(ops: Iterable[Op]) -> tuple[set[ServiceKey], set[ServiceKey]]:
    """(services whose settings, services whose dests) must be read before ``ops`` to undo them."""
    settings: set[ServiceKey] = set()
    dests: set[ServiceKey] = set()
    for op in ops:
        match op:
            case EditService():
                settings.add(op.service)
            case DelService():
                settings.add(op.service)
                dests.add(op.service)
            case EditDest() | DelDest():
                dests.add(op.service)
            case AddService() | AddDest():
                pass  # undone by a delete: nothing to remember
            case _:
                assert_never(op)
    return settings, dests


def inverses(ops: Sequence[Op], before: Mapping[ServiceKey, Service]) -> list[list[Op]]:
    """For each op, the ops that undo it, given the services touched as they were before the batch.

    The batch is simulated forward so that an op's inverse sees the state just before that op
    (linear: each service's destinations are copied at most once). An op whose earlier state is
    unknown gets no inverse (best effort).
    """
    settings = {key: service.settings for key, service in before.items()}
    dests: dict[ServiceKey, dict[tuple[str, int], Dest]] = {}

    def dest_map(key: ServiceKey) -> dict[tuple[str, int], Dest]:
        if key not in dests:
            dests[key] = dict(before[key].dests) if key in before else {}
        return dests[key]

    result: list[list[Op]] = []
    for op in ops:
        key = op.service
        known = key in settings
        undo: list[Op] = []
        match op:
            case AddService(settings=new):
                undo = [DelService(key)]
                settings[key] = new
                dests[key] = {}
            case EditService(settings=new):
                if known:
                    undo = [EditService(key, settings[key])]
                    settings[key] = new
            case DelService():
                if known:
                    undo = [AddService(key, settings.pop(key))]
                    undo += [AddDest(key, d) for _, d in sorted(dest_map(key).items())]
                    dests.pop(key, None)
            case AddDest(dest=dest):
                undo = [DelDest(key, dest.address, dest.port)]
                if known:
                    dest_map(key)[dest.key] = dest
            case EditDest(dest=dest):
                old = dest_map(key).get(dest.key) if known else None
                if old is not None:
                    undo = [EditDest(key, old)]
                    dest_map(key)[dest.key] = dest
            case DelDest(address=address, port=port):
                old = dest_map(key).pop((address, port), None) if known else None
                if old is not None:
                    undo = [AddDest(key, old)]
            case _:
                assert_never(op)
        result.append(undo)
    return result


def rollback_plan(done: Sequence[Op], before: Mapping[ServiceKey, Service]) -> list[Op]:
    """The ops undoing ``done`` (all of which succeeded), last op first."""
    plan: list[Op] = []
    for undo in reversed(inverses(done, before)):
        plan.extend(undo)
    return plan
