"""IPVS scheduler flags (``ipvsadm -b``): the one parser and formatter every part of Saru uses.

A service's ``schedflags`` is text such as ``"sh-fallback,sh-port"`` (comma or space separated).
IPVS knows three flag bits; their names depend on the scheduler: ``sh-fallback``/``sh-port`` for
``sh``, ``mh-fallback``/``mh-port`` for ``mh``, and ``flag-1``/``flag-2``/``flag-3`` for any
scheduler (so ``flag-2`` on ``sh`` *is* ``sh-port``). ``parse_schedflags`` gives the bits (as the
kernel wants them), ``format_schedflags`` the canonical text (as ipvsadm prints it), and
``flag_names`` the canonical names a scheduler implementation tests (``"sh-port" in names``).
"""

from __future__ import annotations

F_SCHED1 = 0x0008  # IP_VS_SVC_F_SCHED1: sh-fallback / mh-fallback
F_SCHED2 = 0x0010  # IP_VS_SVC_F_SCHED2: sh-port / mh-port
F_SCHED3 = 0x0020  # IP_VS_SVC_F_SCHED3
ALL = F_SCHED1 | F_SCHED2 | F_SCHED3

#: name → (bit, scheduler the name belongs to, or None for any scheduler)
SCHEDFLAGS: dict[str, tuple[int, str | None]] = {
    "sh-fallback": (F_SCHED1, "sh"),
    "sh-port": (F_SCHED2, "sh"),
    "mh-fallback": (F_SCHED1, "mh"),
    "mh-port": (F_SCHED2, "mh"),
    "flag-1": (F_SCHED1, None),
    "flag-2": (F_SCHED2, None),
    "flag-3": (F_SCHED3, None),
}


class SchedFlagError(ValueError):
    """An unknown flag, or a flag of another scheduler (the message says which)."""


def split(schedflags: str | None) -> list[str]:
    """The flag words of a ``schedflags`` text (comma or space separated, blanks dropped)."""
    return [name for name in (schedflags or "").replace(" ", ",").split(",") if name]


def parse_schedflags(schedflags: str | None, scheduler: str) -> int:
    """Flag bits of a ``schedflags`` value, checked like ipvsadm ``-b`` (raises SchedFlagError)."""
    bits = 0
    for name in split(schedflags):
        if name not in SCHEDFLAGS:
            raise SchedFlagError(f"unknown scheduler flag {name!r} (known: {', '.join(SCHEDFLAGS)})")
        bit, owner = SCHEDFLAGS[name]
        if owner is not None and owner != scheduler:
            raise SchedFlagError(f"scheduler flag {name!r} needs scheduler {owner!r}, not {scheduler!r}")
        bits |= bit
    return bits


def format_schedflags(flags: int, scheduler: str) -> str | None:
    """The canonical ``schedflags`` text of flag bits (names as ipvsadm prints them); None if none."""
    names = []
    prefix = scheduler if scheduler in ("sh", "mh") else None
    for bit, suffix, number in ((F_SCHED1, "fallback", 1), (F_SCHED2, "port", 2), (F_SCHED3, None, 3)):
        if flags & bit:
            names.append(f"{prefix}-{suffix}" if prefix and suffix else f"flag-{number}")
    return ",".join(names) or None


def canonical(schedflags: str | None, scheduler: str) -> str | None:
    """``schedflags`` in IPVS's order and spelling; text that does not parse is returned unchanged
    (left for the data plane to refuse with its own message)."""
    if not schedflags:
        return None
    try:
        return format_schedflags(parse_schedflags(schedflags, scheduler), scheduler)
    except SchedFlagError:
        return schedflags


def flag_names(schedflags: str | None, scheduler: str) -> frozenset[str]:
    """The canonical names of the flags set (``flag-2`` on ``sh`` → ``{"sh-port"}``).

    Words that do not parse are kept as they are (a scheduler simply ignores them; validation
    refuses them elsewhere).
    """
    names: set[str] = set()
    for word in split(schedflags):
        try:
            text = format_schedflags(parse_schedflags(word, scheduler), scheduler)
        except SchedFlagError:
            names.add(word)
            continue
        if text:
            names.add(text)
    return frozenset(names)
