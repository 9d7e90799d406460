"""The sync-daemon side of the IPVS plane without a kernel: the netlink attributes Saru sends
(checked against libipvs's layout), their decoding, and which daemons each role runs."""

from __future__ import annotations

import socket
import struct

import pytest

from saru.dataplane.ipvs import codec
from saru.dataplane.ipvs.sync import SyncDaemon, daemon_payload, decode_daemon, desired_daemons, roles_for
from saru.ha.vrrp import State
from saru.model import IPVSSyncSettings


def nla(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def test_start_payload_is_libipvs_layout():
    daemon = SyncDaemon("master", "eth0", 7, 1400, "224.0.0.99", 8850, 2)
    inner = (nla(1, struct.pack("=I", 1)) + nla(2, b"eth0\0") + nla(3, struct.pack("=I", 7))
             + nla(4, struct.pack("=H", 1400)) + nla(7, struct.pack("=H", 8850)) + nla(8, b"\x02")
             + nla(5, socket.inet_aton("224.0.0.99")))
    assert daemon_payload(daemon) == nla(3, inner)
    # DEL_DAEMON: state, interface and syncid only
    assert daemon_payload(daemon, full=False) == nla(3, inner[: len(nla(1, b"1234") + nla(2, b"eth0\0")
                                                               + nla(3, b"1234"))])


def test_defaults_are_left_to_the_kernel_and_ipv6_groups():
    plain = daemon_payload(SyncDaemon("backup", "eth1"))
    assert plain == nla(3, nla(1, struct.pack("=I", 2)) + nla(2, b"eth1\0") + nla(3, struct.pack("=I", 0)))
    six = daemon_payload(SyncDaemon("backup", "eth1", mcast_group="ff02::8:81"))
    assert six.endswith(nla(6, socket.inet_pton(socket.AF_INET6, "ff02::8:81")))


def test_dumped_daemon_decodes():
    daemon = SyncDaemon("backup", "eth1", 3, 1472, "224.0.0.81", 8848, 1)
    message = b"\0" * 16 + struct.pack("=BBH", codec.CMD_GET_DAEMON, 1, 0) + daemon_payload(daemon)
    assert decode_daemon(message) == daemon
    assert decode_daemon(b"\0" * 20) is None


@pytest.mark.parametrize(("role", "ha", "expected"), [
    ("both", None, ("master", "backup")),
    ("master", "BACKUP", ("master",)),
    ("backup", "MASTER", ("backup",)),
    ("follow-ha", "MASTER", ("master",)),
    ("follow-ha", "master", ("master",)),
    ("follow-ha", "BACKUP", ("backup",)),
    ("follow-ha", "INIT", ("backup",)),
    ("follow-ha", None, ("backup",)),
    ("follow-ha", State.MASTER, ("master",)),
    ("follow-ha", State.BACKUP, ("backup",)),
])
def test_roles(role, ha, expected):
    assert roles_for(role, ha) == expected


def test_desired_and_satisfied():
    settings = IPVSSyncSettings(interface="eth0", syncid=5, role="follow-ha", port=8848, ttl=1)
    (master,) = desired_daemons(settings, "MASTER")
    assert master == SyncDaemon("master", "eth0", 5, 0, None, 8848, 1)
    assert desired_daemons(None, "MASTER") == []
    # the kernel reports its defaults for what was not asked: still what we want
    running = SyncDaemon("master", "eth0", 5, 1472, "224.0.0.81", 8848, 1)
    assert running.satisfies(master)
    assert not SyncDaemon("master", "eth0", 6, 1472, "224.0.0.81", 8848, 1).satisfies(master)
    assert not SyncDaemon("master", "eth1", 5).satisfies(master)
    grouped = SyncDaemon("master", "eth0", 5, mcast_group="224.0.0.99")
    assert not running.satisfies(grouped)
