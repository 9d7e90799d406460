"""Undoing a half-applied IPVS batch: IPVS has no transactions, so Saru plans the inverse ops (pure).

``needs_snapshot`` says which services must be known before a batch to undo it; ``rollback_plan``
gives the ops that undo the ops that succeeded, last first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from saru.model import AddDest, AddService, DelDest, DelService, Dest, EditDest, EditService, Op, Service, ServiceKey

__all__ = ["inverses", "needs_snapshot", "rollback_plan"]


def needs_snapshot(ops: Iterable[Op]) -> tuple[set[ServiceKey], set[ServiceKey]]:
    """(services whose settings, services whose dests) must be read before ``ops`` to undo them."""
    settings: set[ServiceKey] = set()
    dests: set[ServiceKey] = set()
    for op in ops:
        if isinstance(op, EditService | DelService):
            settings.add(op.service)
        if isinstance(op, EditDest | DelDest | DelService):
            dests.add(op.service)
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
        if isinstance(op, AddService):
            undo = [DelService(key)]
            settings[key] = op.settings
            dests[key] = {}
        elif isinstance(op, EditService):
            if known:
                undo = [EditService(key, settings[key])]
                settings[key] = op.settings
        elif isinstance(op, DelService):
            if known:
                undo = [AddService(key, settings.pop(key))]
                undo += [AddDest(key, d) for _, d in sorted(dest_map(key).items())]
                dests.pop(key, None)
        elif isinstance(op, AddDest):
            undo = [DelDest(key, op.dest.address, op.dest.port)]
            if known:
                dest_map(key)[op.dest.key] = op.dest
        elif isinstance(op, EditDest):
            old = dest_map(key).get(op.dest.key) if known else None
            if old is not None:
                undo = [EditDest(key, old)]
                dest_map(key)[op.dest.key] = op.dest
        elif isinstance(op, DelDest):
            old = dest_map(key).pop((op.address, op.port), None) if known else None
            if old is not None:
                undo = [AddDest(key, old)]
        result.append(undo)
    return result


def rollback_plan(done: Sequence[Op], before: Mapping[ServiceKey, Service]) -> list[Op]:
    """The ops undoing ``done`` (all of which succeeded), last op first."""
    plan: list[Op] = []
    for undo in reversed(inverses(done, before)):
        plan.extend(undo)
    return plan
