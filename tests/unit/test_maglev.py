"""The one Maglev table builder: pinned tables (digests recorded from the two builders it replaced,
nft_render.maglev and schedulers.MaglevHash.build, before they were merged), so that which real a
client hashes to never changes, and both data planes reach it."""

from __future__ import annotations

import hashlib
import json

from saru.dataplane.maglev import maglev_table
from saru.dataplane.nft.slots import MAGLEV_SIZE, maglev
from saru.dataplane.proxy.schedulers import MH_TABLE_SIZE, DestState, MaglevHash

IPV6 = [("2001:db8::80b", 4644), ("2001:db8::ab43", 14041), ("2001:db8::ef7e", 15926)]
MIXED = [("10.0.164.172", 21615), ("2001:db8::7ed8", 43424), ("10.0.205.209", 29808),
         ("2001:db8::409e", 7598), ("10.0.206.222", 43101)]
QUIESCED = [("2001:db8::1f5e", 29465), ("10.0.126.37", 19020), ("2001:db8::9d8a", 16271),
            ("2001:db8::53d3", 12441), ("2001:db8::fef8", 32687)]


def digest(table: list[int]) -> str:
    return hashlib.sha256(json.dumps(table).encode()).hexdigest()


def test_tables_are_the_ones_both_builders_made_before() -> None:
    assert digest(maglev_table(IPV6, [7, 5, 1], MAGLEV_SIZE)) == (
        "a63a90aa29f9025abce6d43bd7716c881388f55e48db8bfa0b74a3315c54805d")
    assert digest(maglev_table(IPV6, [7, 5, 1], MH_TABLE_SIZE)) == (
        "fe8f07cafc54fcdfdee70bb341ddbecd139d96e72d0c9472d08e2350b22b0500")
    assert digest(maglev_table(MIXED, [100, 7, 5, 0, 1], MAGLEV_SIZE)) == (
        "ba91491993ecad00c448a28903212e4491d6acf2c01ce5766792cd536ffeafca")
    assert digest(maglev_table(MIXED, [100, 7, 5, 0, 1], MH_TABLE_SIZE)) == (
        "1ba9af4072c4bf62ed218d70dba2e777ce302f46f84e3ab8e59915ad45bfd039")


def test_nft_renderer_uses_it() -> None:
    assert maglev(QUIESCED, [2, 7, 0, 0, 5]) == maglev_table(QUIESCED, [2, 7, 0, 0, 5], MAGLEV_SIZE)
    assert digest(maglev(QUIESCED, [2, 7, 0, 0, 5])) == (
        "db2d0be2d39c6b1a380602b0464407f77f307e81c2822ae09bec0cfa6648de68")


def test_mh_scheduler_uses_it_and_quiesced_reals_keep_their_last_weight() -> None:
    dests = [DestState(a, p, weight=w, last_weight=last)
             for (a, p), w, last in zip(QUIESCED, [2, 7, 0, 0, 5], [2, 7, 3, 4, 5], strict=True)]
    table = MaglevHash.build(dests)
    assert digest([dests.index(d) for d in table if d is not None]) == (
        "adfeb3611a0c61230aa7e35554bc89a83d87c84027cf86dbb36aa5b5a82619ea")
    assert len(table) == MH_TABLE_SIZE


def test_no_weight_no_table() -> None:
    assert maglev_table(IPV6, [0, 0, 0], MAGLEV_SIZE) == []
    assert maglev_table([], [], MAGLEV_SIZE) == []
    assert MaglevHash.build([DestState("10.0.0.1", 80, weight=0, last_weight=0)]) == [None] * MH_TABLE_SIZE
