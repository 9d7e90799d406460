"""The daemon's explicit state, shared by its parts: where it is in its life (``Life``) and what it
runs and owns (``Loaded``). The parts read and change these objects, never each other's attributes;
``status`` is built from them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from saru.model import Config, ServiceKey, Settings

#: ldirectord's daemon states (the e-mail alerts' ``emailalertstatus`` filters on them)
Phase = Literal["starting", "running", "reloading", "stopping"]


@dataclass(eq=False)
class Life:
    """Where the daemon is: its phase, whether its first table is in (``ready``), whether it is on its
    way out (``stopping``) and with which exit status."""

    phase: Phase = "starting"
    started_at: float = field(default_factory=time.time)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    exit_status: int = 0

    def stop(self, exit_status: int | None = None) -> None:
        """Ask the daemon to stop (``exit_status``: the process's, when it is a failure)."""
        if exit_status is not None:
            self.exit_status = exit_status
        self.stopping.set()


@dataclass(eq=False)
class Loaded:
    """The configuration in force and the services this daemon directs.

    ``owned``: the virtual services Saru may change or remove — the config's, plus those of a config
    replaced by a reload until the next applied table has removed them."""

    config_path: str
    config: Config
    settings: Settings = field(default_factory=Settings)
    owned: set[ServiceKey] = field(default_factory=set)
    reloads: int = 0
    last_reload_error: str | None = None

    @property
    def cfgname(self) -> str:
        """The config file's name (the log's program name, the default socket's)."""
        return Path(self.config_path).name

    def own_config(self) -> None:
        """The services of the config in force, and only those, are owned from now on."""
        self.owned = {v.key for v in self.config.virtuals}
