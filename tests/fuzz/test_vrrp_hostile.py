"""Hostile VRRP adverts on the wire against a real running HA node: ``saru run`` with ``[ha]`` in a
namespace ``s1``, a raw socket in ``k1`` on the same bridge sending mutated adverts (bad checksum,
version, type, VRID 0, wrong length, truncated, random bytes), adverts with TTL 64, and then a storm.

The node stays MASTER with its VIP, counts every packet under a counter (nothing is obeyed, nothing
crashes), and the same advert done right afterwards is obeyed: it becomes BACKUP — so the packets did
reach it.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from saru.control import request_sync
from saru.ha.vrrp import GROUP_V4, IPPROTO_VRRP, Advert, VRRPError, decode_advert, encode_advert
from tests.fuzz.budget import rounds
from tests.helpers import require
from tests.lab import Segment, stop_process, wait_for

S1, K1, VIP = "10.97.0.1", "10.97.0.2", "10.97.0.50"
VRID = 61
GOOD = encode_advert(Advert(VRID, 254, 10, (VIP,)), K1, GROUP_V4)
REFUSALS = ("bad_checksum", "bad_version", "malformed", "other_vrid", "bad_ttl")


def hostile_payloads(count: int, seed: int = 14) -> list[bytes]:
    """Mutations of GOOD that the decoder refuses (checked here), and random bytes."""
    rng = random.Random(seed)
    out: list[bytes] = [GOOD[:7], GOOD[:6] + b"\0\0" + GOOD[8:], bytes([0x21]) + GOOD[1:], GOOD + b"\0" * 4,
                        bytes([0x32]) + GOOD[1:], GOOD[:1] + b"\0" + GOOD[2:], b""]
    while len(out) < count:
        data = bytearray(GOOD)
        for _ in range(rng.randint(1, 4)):
            kind = rng.random()
            pos = rng.randrange(len(data)) if data else 0
            if kind < 0.5 and data:
                data[pos] ^= 1 << rng.randrange(8)
            elif kind < 0.7:
                del data[pos:]
            elif kind < 0.85:
                data[pos:pos] = rng.randbytes(rng.randint(1, 8))
            else:
                data = bytearray(rng.randbytes(rng.randint(0, 64)))
        try:
            decode_advert(bytes(data), K1, GROUP_V4)
        except VRRPError:
            out.append(bytes(data))
    return out


@pytest.fixture(scope="module")
def lan() -> Iterator[Segment]:
    ok, why = Segment.available()
    require(ok, why)
    with Segment({"s1": [f"{S1}/24"], "k1": [f"{K1}/24"]}, tag="z") as segment:
        yield segment


class Node:
    def __init__(self, lan: Segment, workdir: Path) -> None:
        self.control = workdir / "saru.sock"
        (workdir / "ldirectord.cf").write_text("virtual=127.0.0.1:18080\n\treal=127.0.0.2:8080 masq\n"
                                               "\tchecktype=on\n")
        (workdir / "saru.toml").write_text(
            f'[director]\nconfig = "ldirectord.cf"\ndataplane = "proxy"\n\n[ha]\ninterface = "eth0"\n'
            f'vips = ["{VIP}/24"]\nvirtual_router_id = {VRID}\npriority = 100\nadvert_interval = 0.1\n'
            "vipcheck = false\n")
        self.log = workdir / "saru.out"
        with self.log.open("w") as out:
            self.proc = lan["s1"].popen(sys.executable, "-m", "saru", "run", "-c", str(workdir / "saru.toml"),
                                        "--control", str(self.control), stdout=out, stderr=subprocess.STDOUT)

    def ha(self) -> dict[str, Any]:
        answer = request_sync(self.control, "ha", timeout=5)
        assert answer["ok"], answer
        ha: dict[str, Any] = answer["ha"]
        return ha

    def state(self) -> str:
        try:
            return str(self.ha()["state"])
        except (OSError, AssertionError):
            return "unreachable"


@pytest.fixture
def node(lan: Segment, tmp_path: Path) -> Iterator[Node]:
    n = Node(lan, tmp_path)
    try:
        wait_for(lambda: n.proc.poll() is not None or n.state() == "master", 30, "saru in s1 becoming master")
        assert n.proc.poll() is None, n.log.read_text()
        yield n
    finally:
        stop_process(n.proc, 15)


def test_hostile_adverts_are_counted_not_obeyed(lan: Segment, node: Node) -> None:
    payloads = hostile_payloads(rounds(150))
    before = node.ha()["vrrp"]
    with lan["k1"].enter():
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_VRRP)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")

        def refused() -> int:
            counters = node.ha()["vrrp"]
            return sum(counters.get(k, 0) - before.get(k, 0) for k in REFUSALS)

        # in batches that the receive buffer holds (a burst of hundreds overflows it: the kernel drops
        # them before Saru sees them); each packet is refused under a counter (the empty one may not
        # reach the socket as a packet of its own on every kernel: all but one)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        for start in range(0, len(payloads), 50):
            for payload in payloads[start:start + 50]:
                sock.sendto(payload, (GROUP_V4, 0))
            sent = min(start + 50, len(payloads))
            wait_for(lambda sent=sent: refused() >= sent - 1, 10, f"{sent} hostile adverts counted")
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 64)
        for _ in range(20):  # a valid advert, but routed (TTL 64): RFC 5798 §7.1 drops it
            sock.sendto(GOOD, (GROUP_V4, 0))
        wait_for(lambda: refused() >= len(payloads) - 1 + 20, 10, "every hostile advert counted")
        ha = node.ha()
        assert ha["state"] == "master" and ha["vrrp"].get("other_master_seen", 0) == 0, ha
        assert ha["vrrp"]["bad_ttl"] - before.get("bad_ttl", 0) == 20, ha["vrrp"]
        assert VIP in lan["s1"].addresses(4)
        assert node.proc.poll() is None
        # the same advert done right is obeyed: the socket path was live all along
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        for _ in range(3):
            sock.sendto(GOOD, (GROUP_V4, 0))
        wait_for(lambda: node.state() == "backup", 5, "saru obeying a valid advert with priority 254")
    assert "Traceback" not in node.log.read_text()
