"""Turn applied ops into ldirectord's table log vocabulary (pure).

ldirectord says "Added real server", "Quiescent real server", "Restored real server",
"Deleted real server", "Added fallback server", "Deleted fallback server", "Added virtual server",
"Changed virtual server" and "Purged virtual server"; operators grep for these words.
"""

from __future__ import annotations

from collections.abc import Sequence

from saru.events.types import TableChange
from saru.model import (
    AddDest,
    AddService,
    Config,
    DelDest,
    DelService,
    Dest,
    EditDest,
    EditService,
    Op,
    Table,
)


def _fallback_keys(config: Config) -> set[tuple[object, str, int]]:
    """(service, address, port) of every fallback server, with and without the port rewrite."""
    keys: set[tuple[object, str, int]] = set()
    for v in config.virtuals:
        if v.fallback is not None:
            keys.add((v.key, v.fallback.address, v.fallback.port))
            keys.add((v.key, v.fallback.address, v.port))
    return keys


def narrate(ops: Sequence[Op], before: Table, config: Config) -> list[TableChange]:
    """One TableChange per op, in ldirectord's words; ``before`` is the table ops were applied to."""
    fallbacks = _fallback_keys(config)
    changes: list[TableChange] = []
    for op in ops:
        svc = op.service
        if isinstance(op, AddService):
            changes.append(TableChange("Added", "virtual", svc))
        elif isinstance(op, EditService):
            changes.append(TableChange("Changed", "virtual", svc))
        elif isinstance(op, DelService):
            changes.append(TableChange("Purged", "virtual", svc))
        elif isinstance(op, AddDest | EditDest):
            kind = "fallback" if (svc, op.dest.address, op.dest.port) in fallbacks else "real"
            old = before.services[svc].dests.get(op.dest.key) if svc in before.services else None
            changes.append(TableChange(_dest_verb(op, old), kind, svc, op.dest))
        elif isinstance(op, DelDest):
            kind = "fallback" if (svc, op.address, op.port) in fallbacks else "real"
            old = before.services[svc].dests.get((op.address, op.port)) if svc in before.services else None
            changes.append(TableChange("Deleted", kind, svc, old or Dest(op.address, op.port)))
    return changes


def _dest_verb(op: AddDest | EditDest, old: Dest | None) -> str:
    if op.dest.weight == 0:
        return "Quiescent"
    if isinstance(op, AddDest):
        return "Added"
    if old is not None and old.weight == 0:
        return "Restored"
    return "Changed"
