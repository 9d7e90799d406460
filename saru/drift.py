"""Drift: what the kernel holds versus what a data plane applied (pure).

A data plane remembers the table it last wrote or adopted; anything else can change the kernel's
copy behind Saru's back: ``nft flush ruleset`` (Debian's nftables.service does it on restart),
``ipvsadm -C``, another daemon's cleanup. Every plane answers ``verify()`` with the two tables
(``saru.dataplane.base.Verification``); this module compares them, the same way for every plane:

* ``drift(applied, kernel, owned)``: the ops that bring the kernel back to what was applied, for
  the services Saru owns only (another tool's services in IPVS are never touched);
* ``describe(ops, applied, kernel)``: what differed, one short sentence per service or real, for
  the log line, the event and ``saru status``; ``summary(lines)`` joins a few of them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import fields
from typing import assert_never

from saru.diff import diff
from saru.model import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    Dest,
    EditDest,
    EditService,
    Op,
    ServiceKey,
    ServiceSettings,
    Table,
)


def drift(applied: Table, kernel: Table, owned: Collection[ServiceKey]) -> list[Op]:
    """Ops turning ``kernel`` back into ``applied`` for the ``owned`` services (empty: in sync)."""
    mine = Table({key: service for key, service in applied.services.items() if key in owned})
    return diff(kernel, mine, owned=owned)


def _changes(old: ServiceSettings | Dest, new: ServiceSettings | Dest) -> str:
    """``weight 1 → 0, forward gate → masq``: the fields of two settings (or two destinations) that differ."""
    out = []
    for f in fields(old):
        before, after = getattr(old, f.name), getattr(new, f.name)
        if before != after:
            out.append(f"{f.name} {before} → {after}")
    return ", ".join(out)


def describe(ops: Sequence[Op], applied: Table, kernel: Table) -> list[str]:
    """One sentence per difference; a missing service's reals are counted, not listed."""
    lines: list[str] = []
    added = {op.service for op in ops if isinstance(op, AddService)}
    for op in ops:
        key = op.service
        match op:
            case AddService():
                n = len(applied.services[key].dests) if key in applied.services else 0
                lines.append(f"virtual service {key} missing" + (f" (with {n} real{'s' * (n != 1)})" if n else ""))
            case EditService(settings=settings):
                lines.append(f"virtual service {key} changed ({_changes(kernel.services[key].settings, settings)})")
            case DelService():
                lines.append(f"virtual service {key} not applied by Saru")
            case AddDest() | EditDest() | DelDest() if key in added:
                continue  # counted with its service
            case AddDest(dest=dest):
                lines.append(f"real {dest.hostport} of {key} missing")
            case EditDest(dest=dest):
                old = kernel.services[key].dests[dest.key]
                lines.append(f"real {dest.hostport} of {key} changed ({_changes(old, dest)})")
            case DelDest(address=address, port=port):
                lines.append(f"real {kernel.services[key].dests[(address, port)].hostport} of {key} "
                             "not applied by Saru")
            case _:
                assert_never(op)
    return lines


def summary(lines: Sequence[str], limit: int = 4) -> str:
    """The first ``limit`` lines joined with "; ", and how many more there are."""
    text = "; ".join(lines[:limit])
    if len(lines) > limit:
        text += f"; and {len(lines) - limit} more"
    return text
