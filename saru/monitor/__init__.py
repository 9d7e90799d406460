"""Health monitoring: which reals are up, decided by their checks (``saru.checks``) over time.

* ``scheduler``: ``Monitor``, which runs every distinct check once per interval (deduplicated,
  concurrent, under hard timeouts), keeps each real's verdict and tells its listeners;
* ``health``: the hysteresis of one real (``step``, ``force_down``; pure);
* ``spread``: where in its interval each check runs, so that the checks do not start in one burst (pure);
* ``maintenance``: ``maintenancedir`` files that force a real down, and the cached reverse lookups
  their names may need.

The monitor emits ``saru.events`` health events; the daemon turns verdicts into a table.
"""

from saru.monitor.health import Change, HealthState, force_down, step
from saru.monitor.maintenance import MAINTENANCE_MESSAGE, NameCache, in_maintenance, maintenance_names
from saru.monitor.scheduler import Listener, Monitor, RealHealth, ResultListener

__all__ = [
    "MAINTENANCE_MESSAGE",
    "Change",
    "HealthState",
    "Listener",
    "Monitor",
    "NameCache",
    "RealHealth",
    "ResultListener",
    "force_down",
    "in_maintenance",
    "maintenance_names",
    "step",
]
