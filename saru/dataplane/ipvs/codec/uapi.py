"""The numbers of the kernel's IPVS interface (include/uapi/linux/ip_vs.h), and what they mean.

Kernel facts the codec relies on (include/uapi/linux/ip_vs.h, net/netfilter/ipvs/ip_vs_ctl.c):

* service flags: ``PERSISTENT`` 0x1, ``HASHED`` 0x2 (kernel-internal), ``ONEPACKET`` 0x4 (``ops``),
  ``SCHED1..3`` 0x8/0x10/0x20; ``sh-fallback``/``mh-fallback`` are SCHED1 and ``sh-port``/``mh-port``
  are SCHED2 (ipvsadm's ``-b``), so the name read back depends on the scheduler, as in ipvsadm;
* NEW/SET_SERVICE need scheduler, flags, timeout and netmask; the netmask is a network-order IPv4
  mask for IPv4 services and the prefix length (a host-order u32, 1..128) for IPv6 services;
* forwarding methods: masq 0, (localnode 1), ipip 2, gate 3;
* ipvsadm (not the kernel) forces gate/ipip destination ports to the virtual's port; Saru's planner
  does the same (``Capabilities.rewrites_gate_ports``), so destinations are programmed as given.
"""

from __future__ import annotations

import socket
from typing import Literal

from saru.model import Forward

#: Every scheduler the Linux kernel ships (twos since 6.2).
SCHEDULERS = frozenset("rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos".split())

F_PERSISTENT = 0x0001
F_HASHED = 0x0002
F_ONEPACKET = 0x0004
ALL_FLAGS_MASK = 0xFFFFFFFF

FORWARD_CODES: dict[str, int] = {"masq": 0, "ipip": 2, "gate": 3}
FORWARD_BY_CODE: dict[int, Forward] = {0: "masq", 1: "gate", 2: "ipip", 3: "gate"}  # 1 = localnode
FWD_MASK = 0x7

#: the address-and-port protocols (firewall-mark services carry none)
PortProtocol = Literal["tcp", "udp"]
PROTOCOLS: dict[PortProtocol, int] = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
PROTOCOL_NAMES: dict[int, PortProtocol] = {number: name for name, number in PROTOCOLS.items()}
FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}


# IPVS_CMD_* numbers (include/uapi/linux/ip_vs.h)
CMD_NEW_SERVICE = 1
CMD_SET_SERVICE = 2
CMD_DEL_SERVICE = 3
CMD_GET_SERVICE = 4
CMD_NEW_DEST = 5
CMD_SET_DEST = 6
CMD_DEL_DEST = 7
CMD_GET_DEST = 8
CMD_NEW_DAEMON = 9
CMD_DEL_DAEMON = 10
CMD_GET_DAEMON = 11
CMD_ZERO = 16
CMD_FLUSH = 17


# attribute name → (type number, encoding), from include/uapi/linux/ip_vs.h
SERVICE_ATTRS: dict[str, tuple[int, str]] = {
    "IPVS_SVC_ATTR_AF": (1, "u16"),
    "IPVS_SVC_ATTR_PROTOCOL": (2, "u16"),
    "IPVS_SVC_ATTR_ADDR": (3, "addr"),
    "IPVS_SVC_ATTR_PORT": (4, "be16"),
    "IPVS_SVC_ATTR_FWMARK": (5, "u32"),
    "IPVS_SVC_ATTR_SCHED_NAME": (6, "asciiz"),
    "IPVS_SVC_ATTR_FLAGS": (7, "flags"),
    "IPVS_SVC_ATTR_TIMEOUT": (8, "u32"),
    "IPVS_SVC_ATTR_NETMASK": (9, "ip4"),
}
DEST_ATTRS: dict[str, tuple[int, str]] = {
    "IPVS_DEST_ATTR_ADDR": (1, "addr"),
    "IPVS_DEST_ATTR_PORT": (2, "be16"),
    "IPVS_DEST_ATTR_FWD_METHOD": (3, "u32"),
    "IPVS_DEST_ATTR_WEIGHT": (4, "u32"),
    "IPVS_DEST_ATTR_U_THRESH": (5, "u32"),
    "IPVS_DEST_ATTR_L_THRESH": (6, "u32"),
    "IPVS_DEST_ATTR_ADDR_FAMILY": (11, "u16"),
}
DAEMON_ATTRS: dict[str, tuple[int, str]] = {
    "IPVS_DAEMON_ATTR_STATE": (1, "u32"),
    "IPVS_DAEMON_ATTR_MCAST_IFN": (2, "asciiz"),
    "IPVS_DAEMON_ATTR_SYNC_ID": (3, "u32"),
    "IPVS_DAEMON_ATTR_SYNC_MAXLEN": (4, "u16"),
    "IPVS_DAEMON_ATTR_MCAST_GROUP": (5, "ip4"),
    "IPVS_DAEMON_ATTR_MCAST_GROUP6": (6, "ip6"),
    "IPVS_DAEMON_ATTR_MCAST_PORT": (7, "u16"),
    "IPVS_DAEMON_ATTR_MCAST_TTL": (8, "u8"),
}
CMD_ATTRS: dict[str, tuple[int, dict[str, tuple[int, str]]]] = {
    "IPVS_CMD_ATTR_SERVICE": (1, SERVICE_ATTRS),
    "IPVS_CMD_ATTR_DEST": (2, DEST_ATTRS),
    "IPVS_CMD_ATTR_DAEMON": (3, DAEMON_ATTRS),
}

#: the nested STATS64 attribute of a dumped service and of a dumped destination
SVC_STATS64 = 12
DEST_STATS64 = 12
#: the counters inside STATS64, by attribute number (1..5)
STATS_FIELDS = ("conns", "inpkts", "outpkts", "inbytes", "outbytes")

GENL_HEADER = 20  # struct nlmsghdr (16) + struct genlmsghdr (4)
