"""The director daemon, made of parts.

``Daemon(options).run()`` (``lifecycle``) is the process: start-up order, signals, pid file,
instance lock, control socket, and a way out that releases only what it holds. Its parts, each
given what it works on (the data plane, the monitor's verdicts, the alert sink, the HA node factory):

* ``reconciler`` — dirty → plan → diff → apply, retries with back-off, the start timeout;
* ``gate`` — what the table does while the HA node is master or backup; the IPVS sync daemons;
* ``configwatch`` — reloads (SIGHUP, ``saru reload``, ``autoreload``/``callback``), saru.toml's
  held settings;
* ``driftwatch`` — the kernel's table checked against what was applied, and repaired;
* ``service`` — the operations a front door offers (status, table, stats, zero, connections, apply,
  reload, stop, ha, ha resign/takeover) as typed methods; ``commands`` maps the control socket's
  requests onto them;
* ``state`` (``Life``, ``Loaded``) and ``journal`` — the explicit state the parts share;
* ``metrics_snapshot``, ``metrics_live``, ``realstats``, ``histogram`` — what ``/metrics`` shows: the
  typed snapshot, its per-real rows kept between scrapes, per-real check statistics, the
  apply-duration histogram; ``heap`` keeps the garbage collector off the long-lived objects;
* ``hooks``, ``pidfile``, ``instance_lock``, ``daemonize`` — the edges: external commands, the pid
  file, one daemon per config, detaching for ``saru-ldirectord start``.
"""

from saru.daemon.driftwatch import DEFAULT_INTERVAL as DEFAULT_DRIFT_INTERVAL
from saru.daemon.lifecycle import Daemon
from saru.daemon.options import DEFAULT_START_TIMEOUT, DaemonOptions
from saru.daemon.service import DaemonService, ServiceError

__all__ = [
    "DEFAULT_DRIFT_INTERVAL",
    "DEFAULT_START_TIMEOUT",
    "Daemon",
    "DaemonOptions",
    "DaemonService",
    "ServiceError",
]
