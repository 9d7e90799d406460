"""The IPVS data plane: Saru's table in the Linux kernel's virtual server table, over generic netlink.

* ``plane``: ``IpvsDataplane`` (the ``Dataplane``: read, apply with rollback, stats, connections,
  drift) and the probes ``saru doctor`` uses (``module_installed``, ``PROC_IP_VS``);
* ``netlink``: ``GenlSocket``, Saru's batched generic-netlink socket (the transport);
* ``sync``: the kernel's connection-synchronisation daemons (``[ipvs.sync]`` in saru.toml);
* ``codec``: the pure translation between Saru's model and the kernel's IPVS interface (a package).

Modules outside import what ``__all__`` lists (or ``codec``'s offer, for the wire format).
"""

from saru.dataplane.ipvs.plane import CAPABILITIES, PROC_IP_VS, IpvsDataplane, module_installed
from saru.dataplane.ipvs.sync import (
    SyncDaemon,
    SyncError,
    apply_sync,
    desired_daemons,
    read_daemons,
    start_daemon,
    stop_daemon,
)

__all__ = [
    "CAPABILITIES", "PROC_IP_VS", "IpvsDataplane", "SyncDaemon", "SyncError", "apply_sync", "desired_daemons",
    "module_installed", "read_daemons", "start_daemon", "stop_daemon",
]
