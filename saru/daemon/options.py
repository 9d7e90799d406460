"""What a daemon is started with: filled in by its front ends (``saru run``, ``saru demo``,
``saru-ldirectord start``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from saru.daemon.driftwatch import DEFAULT_INTERVAL

#: seconds a table that keeps failing to apply may take before the first ready (``--start-timeout``)
DEFAULT_START_TIMEOUT = 30.0


@dataclass
class DaemonOptions:
    config_path: str
    dataplane: str = "auto"
    control_path: str | None = None
    pidfile: str | None = None
    console: TextIO | None = None
    debug: bool = False
    rise: int = 1
    watch_interval: float = 1.0  # how often the config file is stat()ed for autoreload/callback
    #: called once when every real has its first verdict and the table is applied (daemonising
    #: front ends such as ``saru-ldirectord start`` return to their caller then)
    on_ready: Callable[[], None] | None = None
    #: saru.toml: ``[ha] mode = "vrrp"`` makes this daemon one of a failover pair
    settings_path: str | None = None
    #: before the daemon is first ready, a table that keeps failing to apply for this many seconds
    #: stops it with exit status 1 (0: keep retrying); after that, failures are retried, never fatal
    start_timeout: float = DEFAULT_START_TIMEOUT
    #: the give-up message's advice (how this front end asks for endless retries)
    start_timeout_hint: str = "--start-timeout 0 keeps retrying"
    #: seconds between two checks of the kernel's table (and of the VIP on an HA master) against
    #: what Saru applied; 0: only on status, plan and reload (``saru.daemon.driftwatch``)
    drift_interval: float = DEFAULT_INTERVAL
    #: take the listening sockets of the daemon running this config, then stop it (``saru.daemon.handover``)
    handover: bool = False
