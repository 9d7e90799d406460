"""saru.model.schedflags: one parser/formatter of IPVS scheduler flags for every data plane."""

from __future__ import annotations

import pytest

from saru.model.schedflags import (
    F_SCHED1,
    F_SCHED2,
    F_SCHED3,
    SchedFlagError,
    canonical,
    flag_names,
    format_schedflags,
    parse_schedflags,
)


def test_bits_and_names() -> None:
    assert parse_schedflags("sh-port,sh-fallback", "sh") == F_SCHED1 | F_SCHED2
    assert parse_schedflags("flag-2 flag-3", "wrr") == F_SCHED2 | F_SCHED3
    assert format_schedflags(F_SCHED1 | F_SCHED2, "mh") == "mh-fallback,mh-port"
    assert format_schedflags(F_SCHED1 | F_SCHED3, "rr") == "flag-1,flag-3"
    assert format_schedflags(0, "sh") is None


def test_spellings_are_canonical() -> None:
    assert canonical("flag-2,sh-fallback", "sh") == "sh-fallback,sh-port"
    assert canonical(None, "sh") is None
    assert canonical("bogus", "sh") == "bogus"  # left for the data plane to refuse
    assert flag_names("flag-2", "sh") == {"sh-port"}
    assert flag_names("mh-port mh-fallback", "mh") == {"mh-port", "mh-fallback"}


@pytest.mark.parametrize(("text", "scheduler", "message"), [
    ("sh-port", "wrr", "needs scheduler 'sh'"),
    ("sh-bogus", "sh", "unknown scheduler flag"),
])
def test_refusals(text: str, scheduler: str, message: str) -> None:
    with pytest.raises(SchedFlagError, match=message):
        parse_schedflags(text, scheduler)
