"""One family's table as objects, and the nft commands turning one such set of objects into another.

``Objects`` (chains with their rules, sets and maps with their static elements) is the unit the plane
diffs between two applies; ``transaction(old, new)`` gives the commands of ONE kernel transaction
touching only what differs (pure). After adoption the plane knows the names of what Saru's tables
hold, not their contents (``unknown_script``, ``UNKNOWN``): every chain is then flushed and rebuilt,
every map refilled, and dynamic sets that stay keep their entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from saru.dataplane.nft.names import TABLE

__all__ = ["UNKNOWN", "UNKNOWN_MAP", "Existing", "Objects", "transaction", "unknown_script"]


@dataclass(frozen=True)
class Existing:
    """Objects currently in Saru's tables: family → chain names / set names."""

    chains: Mapping[str, frozenset[str]] = field(default_factory=dict)
    sets: Mapping[str, frozenset[str]] = field(default_factory=dict)  # sets and maps
    maps: Mapping[str, frozenset[str]] = field(default_factory=dict)  # which of them are maps
    #: family → flowtable name → its declaration as ``offload.flowtable_spec`` writes it (UNKNOWN if not)
    flowtables: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def has_table(self, family: str) -> bool:
        return family in self.chains or family in self.sets or family in self.flowtables


@dataclass
class Objects:
    """One family's table as objects: the unit the plane diffs between two applies.

    ``sets``: name → declaration; ``chains``: name → hook spec ("" for regular chains), in creation
    order; ``rules``: chain → its rules in order; ``elements``: set/map name → element key → the
    element's text (static elements only; dynamic sets carry none); ``flowtables``: name →
    declaration.
    """

    family: str
    sets: dict[str, str] = field(default_factory=dict)
    chains: dict[str, str] = field(default_factory=dict)
    rules: dict[str, list[str]] = field(default_factory=dict)
    elements: dict[str, dict[str, str]] = field(default_factory=dict)
    flowtables: dict[str, str] = field(default_factory=dict)

    def chain(self, name: str, spec: str = "") -> None:
        self.chains[name] = spec
        self.rules.setdefault(name, [])

    def rule(self, chain: str, text: str) -> None:
        self.rules.setdefault(chain, []).append(text)

    def element(self, name: str, key: str, text: str) -> None:
        self.elements.setdefault(name, {})[key] = text

    @property
    def empty(self) -> bool:
        return not self.chains and not self.sets and not self.flowtables


#: marks what an adopted table holds but Saru did not render in this process (contents unknown)
UNKNOWN = "\0unknown"
UNKNOWN_MAP = "\0unknown : map"  # an adopted map (a set and a map of one name are not interchangeable)


def unknown_script(family: str, existing: Existing) -> Objects:
    """The objects ``existing`` names, contents unknown: every chain is flushed and rebuilt,
    every map refilled; dynamic sets that stay keep their entries."""
    old = Objects(family)
    for name in existing.chains.get(family, frozenset()):
        old.chains[name] = UNKNOWN
        old.rules[name] = [UNKNOWN]
    maps = existing.maps.get(family, frozenset())
    for name in existing.sets.get(family, frozenset()):
        old.sets[name] = UNKNOWN_MAP if name in maps else UNKNOWN
    old.flowtables.update(existing.flowtables.get(family, {}))
    return old


def _is_map(spec: str) -> bool:
    return " : " in spec


def _references(rules: Sequence[str], names: set[str]) -> bool:
    return any(f"@{name} " in f"{rule} " for rule in rules for name in names)


def transaction(old: Objects, new: Objects, existed: bool | None = None) -> list[str]:
    """The nft commands turning ``old`` into ``new``, touching only what differs.

    Order inside the one transaction: flush changed chains, delete stale elements, delete sets,
    then chains, then flowtables that go, add flowtables, sets and chains that come, add elements,
    add the changed chains' rules.
    ``existed``: whether the table exists in the kernel (default: ``old`` has objects).
    """
    fam = f"{new.family} {TABLE}"
    existed = (not old.empty) if existed is None else existed
    if new.empty:
        return [f"delete table {fam}"] if existed else []
    out = [] if existed else [f"add table {fam}"]
    recreated = {n for n, spec in new.sets.items() if n in old.sets and old.sets[n] != spec
                 and not (old.sets[n] in (UNKNOWN, UNKNOWN_MAP) and _is_map(old.sets[n]) == _is_map(spec))}
    gone_sets = (old.sets.keys() - new.sets.keys()) | recreated
    gone_chains = {c for c in old.chains if c not in new.chains or old.chains[c] not in (new.chains[c], UNKNOWN)}
    new_flowtables = {n for n, spec in new.flowtables.items() if old.flowtables.get(n) != spec}
    gone_flowtables = (old.flowtables.keys() - new.flowtables.keys()) | (new_flowtables & old.flowtables.keys())
    changed = [c for c in new.chains if c in old.chains and c not in gone_chains
               and (old.rules.get(c) != new.rules.get(c)
                    or _references(new.rules.get(c, []), recreated | gone_flowtables))]
    out += [f"flush chain {fam} {c}" for c in sorted(gone_chains | set(changed))]
    for name, elements in sorted(new.elements.items()):
        before = old.elements.get(name)
        if name in gone_sets or name not in old.sets:
            continue
        if old.sets[name] in (UNKNOWN, UNKNOWN_MAP):  # adopted: whatever it holds is replaced
            out.append(f"flush {'map' if _is_map(new.sets[name]) else 'set'} {fam} {name}")
            continue
        if not before:
            continue
        stale = [k for k, text in before.items() if elements.get(k) != text]
        if stale and len(stale) == len(before) and len(stale) > 1:  # all go: cheaper as one flush
            out.append(f"flush {'map' if _is_map(new.sets[name]) else 'set'} {fam} {name}")
        elif stale:
            out.append(f"delete element {fam} {name} {{ {', '.join(stale)} }}")
    for name, before in sorted(old.elements.items()):  # maps that stay but lose every element
        if name in new.sets and name not in gone_sets and name not in new.elements and before:
            out.append(f"flush {'map' if _is_map(new.sets[name]) else 'set'} {fam} {name}")
    # sets before chains: the rules using them are flushed already, and a verdict map's elements
    # still hold references to the chains they jump to
    out += [f"delete {'map' if _is_map(old.sets[n]) else 'set'} {fam} {n}" for n in sorted(gone_sets)]
    out += [f"delete chain {fam} {c}" for c in sorted(gone_chains)]
    # flowtables once no rule refers to them (chains flushed or deleted above); a changed one is
    # recreated (its offloaded flows fall back to the ordinary path and are offloaded again)
    out += [f"delete flowtable {fam} {n}" for n in sorted(gone_flowtables)]
    out += [f"add flowtable {fam} {n} {{ {new.flowtables[n]} }}" for n in sorted(new_flowtables)]
    out += [f"add set {fam} {n} {{ {spec} }}" if not _is_map(spec) else f"add map {fam} {n} {{ {spec} }}"
            for n, spec in sorted(new.sets.items()) if n not in old.sets or n in gone_sets]
    out += [f"add chain {fam} {c}" + (f" {{ {spec} }}" if spec else "")
            for c, spec in new.chains.items() if c not in old.chains or c in gone_chains]
    for name, elements in sorted(new.elements.items()):
        before = old.elements.get(name) or {}
        fresh = name not in old.sets or name in gone_sets or old.sets[name] in (UNKNOWN, UNKNOWN_MAP)
        add = [text for k, text in elements.items() if fresh or before.get(k) != text]
        if add:
            out.append(f"add element {fam} {name} {{ {', '.join(add)} }}")
    for c in new.chains:
        if c not in old.chains or c in gone_chains or c in changed:
            out += [f"add rule {fam} {c} {text}" for text in new.rules.get(c, [])]
    return out
