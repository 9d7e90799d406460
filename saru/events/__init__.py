"""What happened, and where it is told: typed events and the sinks that render them.

* ``types``: the events (``RealUp``, ``RealDown``, ``TableChange``, ``DaemonEvent``, ``TableDrift``,
  the HA events…), each rendering itself in ldirectord's log vocabulary (``message()``);
* ``narrate``: applied ops → ``TableChange`` events (pure);
* ``logsink``: the ``saru`` logger's handlers in ldirectord's formats (``configure_logging``,
  ``reopen_log_files``);
* ``alerts``: ``emailalert`` mails for table changes, sent in the background (``AlertSink``);
* ``monitorfile``: ``monitorfile=``, one line per check result (``MonitorFile``);
* ``throttle``: persistent conditions logged at start, on change and as a reminder at most once a
  minute with a count (``Throttle``, pure), for the monitor, the HA node and the config watcher.

The monitor, the daemon and the HA node emit events; only the sinks here do I/O with them.
"""

from saru.events.alerts import AlertSink
from saru.events.logsink import configure_logging, reopen_log_files
from saru.events.monitorfile import MonitorFile
from saru.events.narrate import narrate
from saru.events.types import (
    TABLE_VERBS,
    ConfigReloaded,
    DaemonEvent,
    Event,
    FailuresReset,
    HAEvent,
    HAProblem,
    HAStateChange,
    LocalFault,
    LocalFaultCleared,
    OperatorAction,
    PanicMode,
    PingChange,
    RealDown,
    RealStillDown,
    RealUp,
    ReloadFailed,
    SoftFailure,
    SplitBrain,
    SplitBrainResolved,
    TableChange,
    TableDrift,
    VIPChange,
    VIPConflict,
    VIPRestored,
)

__all__ = [
    "TABLE_VERBS",
    "AlertSink",
    "ConfigReloaded",
    "DaemonEvent",
    "Event",
    "FailuresReset",
    "HAEvent",
    "HAProblem",
    "HAStateChange",
    "LocalFault",
    "LocalFaultCleared",
    "MonitorFile",
    "OperatorAction",
    "PanicMode",
    "PingChange",
    "RealDown",
    "RealStillDown",
    "RealUp",
    "ReloadFailed",
    "SoftFailure",
    "SplitBrain",
    "SplitBrainResolved",
    "TableChange",
    "TableDrift",
    "VIPChange",
    "VIPConflict",
    "VIPRestored",
    "configure_logging",
    "narrate",
    "reopen_log_files",
]
