"""The Maglev lookup table (Eisenbud et al., NSDI 2016), built once for every data plane that hashes.

``maglev_table(keys, weights, size)`` returns ``size`` slots, each the index of the destination (in
``keys``) that owns it, or ``[]`` when no destination has a weight. Each destination with a weight
fills slots along its own permutation of the table (offset and skip from BLAKE2b digests of
``"<address>|<port>"``, so a destination's slots depend on itself alone), ``weight / gcd(weights)``
slots per turn, in ``keys`` order, until the table is full. Removing one destination therefore moves
(almost) only its own slots; a weight-0 destination owns none.

Users: the nftables renderer (``sh``/``mh``/``dh`` verdict maps, ``MAGLEV_SIZE`` = 1021 slots) and the
userspace ``mh`` scheduler (16381 slots, which also hashes clients with ``digest64``). The digests
and the order of filling are part of what users see (which real a client lands on), so they never
change.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

OFFSET_PERSON = b"saru-mh-offset"
SKIP_PERSON = b"saru-mh-skip"


def digest64(data: bytes, person: bytes) -> int:
    """A 64-bit BLAKE2b digest of ``data``, personalised by ``person`` (big-endian integer)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=person).digest(), "big")


def maglev_table(keys: Sequence[tuple[str, int]], weights: Sequence[int], size: int) -> list[int]:
    """Slot → index into ``keys`` (``(address, port)`` pairs), ``size`` slots (a prime); ``[]`` when
    no weight is positive."""
    owners = [i for i, w in enumerate(weights) if w > 0]
    if not owners:
        return []
    g = math.gcd(*(weights[i] for i in owners))
    turns = [weights[i] // g for i in owners]
    raws = [f"{keys[i][0]}|{keys[i][1]}".encode() for i in owners]
    perms = [digest64(raw, OFFSET_PERSON) % size for raw in raws]
    skips = [digest64(raw, SKIP_PERSON) % (size - 1) + 1 for raw in raws]
    table = [-1] * size
    filled = 0
    while True:
        for n, owner in enumerate(owners):
            perm, skip = perms[n], skips[n]
            for _ in range(turns[n]):
                while table[perm] != -1:
                    perm += skip
                    if perm >= size:
                        perm -= size
                table[perm] = owner
                filled += 1
                if filled >= size:
                    return table
            perms[n] = perm
