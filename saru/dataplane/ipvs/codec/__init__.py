"""Translation between Saru's table model and the kernel's IPVS interface (pure, no I/O).

What the IPVS plane (``ipvs.plane``) and the sync daemons (``ipvs.sync``) need to talk to the
kernel, one job per module:

* ``uapi``: the kernel's numbers (commands, attributes, flags, forwarding codes) and their meaning;
* ``validation``: ``validate(op)`` refuses what IPVS cannot express before anything is sent;
* ``packing``: ops as generic-netlink requests (``request``, ``wire``: attribute lists, then bytes);
* ``dump``: the kernel's dumps back into services, settings, destinations and counters;
* ``rollback``: the inverse ops that undo a half-applied batch (IPVS has no transactions);
* ``bulk``: many destination changes of a wrr/mh service made under rr (O(N) instead of O(N²));
* ``procfs``: /proc/net/ip_vs_conn (the connection entries ``ipvsadm -L -c`` shows).

Callers import this package (``from saru.dataplane.ipvs import codec``) and use what ``__all__``
lists.
"""

from saru.dataplane.ipvs.codec.bulk import BULK_DEST_OPS, COSTLY_SCHEDULERS, with_cheap_scheduler
from saru.dataplane.ipvs.codec.dump import (
    Nla,
    decode_dest,
    decode_service_key,
    decode_settings,
    dest_connections,
    dumped,
    netmask_text,
    stats64,
)
from saru.dataplane.ipvs.codec.packing import (
    Attrs,
    AttrValue,
    CmdAttrs,
    Flags,
    Nested,
    Request,
    dest_attrs,
    dest_key_attrs,
    netmask_attr,
    pack_attrs,
    request,
    service_attrs,
    service_key_attrs,
    wire,
    wire_all,
)
from saru.dataplane.ipvs.codec.procfs import parse_conn_line, parse_conn_table
from saru.dataplane.ipvs.codec.rollback import inverses, needs_snapshot, rollback_plan
from saru.dataplane.ipvs.codec.uapi import (
    CMD_DEL_DAEMON,
    CMD_DEL_DEST,
    CMD_DEL_SERVICE,
    CMD_FLUSH,
    CMD_GET_DAEMON,
    CMD_GET_DEST,
    CMD_GET_SERVICE,
    CMD_NEW_DAEMON,
    CMD_NEW_DEST,
    CMD_NEW_SERVICE,
    CMD_SET_DEST,
    CMD_SET_SERVICE,
    CMD_ZERO,
    DEST_STATS64,
    F_ONEPACKET,
    F_PERSISTENT,
    FORWARD_CODES,
    SCHEDULERS,
    SVC_STATS64,
)
from saru.dataplane.ipvs.codec.validation import InvalidOp, netmask_value, parse_schedflags, validate

__all__ = [
    "BULK_DEST_OPS", "CMD_DEL_DAEMON", "CMD_DEL_DEST", "CMD_DEL_SERVICE", "CMD_FLUSH", "CMD_GET_DAEMON", "CMD_GET_DEST",
    "CMD_GET_SERVICE", "CMD_NEW_DAEMON", "CMD_NEW_DEST", "CMD_NEW_SERVICE", "CMD_SET_DEST", "CMD_SET_SERVICE",
    "CMD_ZERO", "COSTLY_SCHEDULERS", "DEST_STATS64", "FORWARD_CODES", "F_ONEPACKET", "F_PERSISTENT", "SCHEDULERS",
    "SVC_STATS64", "AttrValue", "Attrs", "CmdAttrs", "Flags", "InvalidOp", "Nested", "Nla", "Request", "decode_dest",
    "decode_service_key", "decode_settings", "dest_attrs", "dest_connections", "dest_key_attrs", "dumped", "inverses",
    "needs_snapshot", "netmask_attr", "netmask_text", "netmask_value", "pack_attrs", "parse_conn_line",
    "parse_conn_table", "parse_schedflags", "request", "rollback_plan", "service_attrs", "service_key_attrs", "stats64",
    "validate", "wire", "wire_all", "with_cheap_scheduler",
]
