"""Turn applied ops into ldirectord's table log vocabulary (pure).

ldirectord says "Added real server", "Quiescent real server", "Restored real server",
"Deleted real server", "Added fallback server", "Deleted fallback server", "Added virtual server",
"Changed virtual server" and "Purged virtual server"; operators grep for these words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

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
        match op:
            case AddService():
                changes.append(TableChange("Added", "virtual", svc))
            case EditService():
                changes.append(TableChange("Changed", "virtual", svc))
            case DelService():
                changes.append(TableChange("Purged", "virtual", svc))
            case AddDest(dest=dest) | EditDest(dest=dest):
                kind = "fallback" if (svc, dest.address, dest.port) in fallbacks else "real"
                old = before.services[svc].dests.get(dest.key) if svc in before.services else None
                changes.append(TableChange(_dest_verb(op, old), kind, svc, dest))
            case DelDest(address=address, port=port):
                kind = "fallback" if (svc, address, port) in fallbacks else "real"
                old = before.services[svc].dests.get((address, port)) if svc in before.services else None
                changes.append(TableChange("Deleted", kind, svc, old or Dest(address, port)))
            case _:
                assert_never(op)
    return changes


def _dest_verb(op: AddDest | EditDest, old: Dest | None) -> str:
    if op.dest.weight == 0:
        return "Quiescent"
    match op:
        case AddDest():
            return "Added"
        case EditDest():
            return "Restored" if old is not None and old.weight == 0 else "Changed"
        case _:
            assert_never(op)
