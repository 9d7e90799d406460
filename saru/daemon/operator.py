"""The operator's overrides of reals (drain, disable, weight), and where they are kept.

``OperatorState`` holds them by API name (``proxy``, ``server``: ``saru.api.names``) and gives the
planner the ones of the config in force (``for_config``). They survive ``saru reload`` and a
restart:

* ``disable`` with the config's ``maintenancedir`` set is ldirectord's own mechanism: a file named
  ``ADDRESS:PORT`` (``[ADDRESS]:PORT`` for IPv6) in that directory. As in ldirectord, it takes the
  real out of every virtual service that has it; ``enable`` removes the file. A file made by hand
  counts the same, and is read back at start and at each reload.
* everything else — drain, weight, and disable without ``maintenancedir`` — is kept in a JSON state
  file, ``<state dir>/operator/<config name>-<hash of its path>.json``; the state directory is
  ``$SARU_STATE_DIR``, else /var/lib/saru (root), else ``$XDG_STATE_HOME/saru`` or
  ``~/.local/state/saru``. It is written atomically (a new file renamed over the old one).

A change that cannot be kept (a directory that cannot be written) is refused and changes nothing
(``OperatorError``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saru.api.names import proxy_name, server_name
from saru.files import UnsafeFile, write_file
from saru.model import OVERRIDE_STATES, Config, Override, RealRef
from saru.monitor.maintenance import maintenance_names

#: the state file's format version
VERSION = 1

Name = tuple[str, str]  # (proxy, server)


class OperatorError(Exception):
    """An override that cannot be kept (``str()`` says why); nothing was changed."""


def state_dir() -> Path:
    """Where state that outlives a restart is kept (see the module docstring)."""
    override = os.environ.get("SARU_STATE_DIR")
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/var/lib/saru")
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "saru"


def state_path(config_path: str) -> Path:
    """The operator state file of the daemon running ``config_path``."""
    absolute = os.path.abspath(config_path)
    digest = hashlib.sha256(absolute.encode()).hexdigest()[:16]
    return state_dir() / "operator" / f"{Path(absolute).name}-{digest}.json"


def names_of(ref: RealRef) -> Name:
    return proxy_name(ref.service), server_name(ref.address, ref.port)


def maintenance_file(directory: str, address: str, port: int) -> Path:
    """The file ``disable`` writes: ldirectord's first name for a real, ``ADDRESS:PORT``."""
    return Path(directory) / maintenance_names(address, port)[0]


@dataclass(frozen=True)
class Kept:
    """Where an override was kept, for the answer and the log."""

    where: str  # "maintenancedir" or "state file"
    path: str


class OperatorState:
    """The overrides and their keeping (module docstring). ``path``: the state file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._kept: dict[Name, Override] = {}  # in the state file
        self._maint: dict[str, float] = {}  # server name -> since: a maintenancedir file exists
        self._maintenancedir: str | None = None
        self.warnings: list[str] = []

    # -- loading ------------------------------------------------------------------------------------

    def load(self, config: Config) -> list[str]:
        """Read the state file and the maintenance directory (at start and at each reload); the
        problems found (an unreadable state file is reported and treated as empty)."""
        self.warnings = []
        self._maintenancedir = config.globals.maintenancedir
        self._kept = self._read_state_file()
        self._maint = {}
        directory = self._maintenancedir
        if directory:
            for v in config.virtuals:
                for r in v.reals:
                    path = maintenance_file(directory, r.address, r.port)
                    with contextlib.suppress(OSError):
                        self._maint[server_name(r.address, r.port)] = path.stat().st_mtime
        return self.warnings

    def _read_state_file(self) -> dict[Name, Override]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self.warnings.append(f"operator state file {self.path}: {exc.strerror}; starting without it")
            return {}
        kept: dict[Name, Override] = {}
        try:
            doc: Any = json.loads(text)
            for item in doc["overrides"]:
                state = item["state"]
                weight = item.get("weight")
                if state not in OVERRIDE_STATES or not (weight is None or type(weight) is int):
                    raise ValueError(f"bad override {item!r}")
                kept[(str(item["proxy"]), str(item["server"]))] = Override(state, weight, float(item.get("since", 0)))
        except (ValueError, KeyError, TypeError) as exc:
            self.warnings.append(f"operator state file {self.path} is not valid ({exc}); starting without it")
            return {}
        return kept

    # -- reading ------------------------------------------------------------------------------------

    def for_config(self, config: Config) -> dict[RealRef, Override]:
        """The overrides of the config's reals (what the planner applies)."""
        found: dict[RealRef, Override] = {}
        if not self._kept and not self._maint:
            return found
        for v in config.virtuals:
            proxy = proxy_name(v.key)
            for r in v.reals:
                server = server_name(r.address, r.port)
                since = self._maint.get(server)
                override = Override("disable", since=since) if since is not None else self._kept.get((proxy, server))
                if override is not None:
                    found[RealRef(v.key, r.address, r.port)] = override
        return found

    def get(self, ref: RealRef) -> Override | None:
        since = self._maint.get(server_name(ref.address, ref.port))
        if since is not None:
            return Override("disable", since=since)
        return self._kept.get(names_of(ref))

    def keeping(self, state: str) -> Kept:
        """Where an override of this kind is kept now."""
        if state == "disable" and self._maintenancedir:
            return Kept("maintenancedir", self._maintenancedir)
        return Kept("state file", str(self.path))

    # -- changing -----------------------------------------------------------------------------------

    def set(self, ref: RealRef, override: Override) -> Kept:
        """Keep an override of one real (a maintenancedir disable: of every virtual that has it)."""
        kept = self.keeping(override.state)
        name = names_of(ref)
        if kept.where == "maintenancedir":
            path = maintenance_file(kept.path, ref.address, ref.port)
            try:
                write_file(path, f"disabled by saru at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            except UnsafeFile as exc:
                raise OperatorError(f"cannot write the maintenance file {exc}") from exc
            except OSError as exc:
                raise OperatorError(f"cannot write the maintenance file {path}: {exc.strerror}") from exc
            self._maint[name[1]] = override.since
            return Kept("maintenancedir", str(path))
        new = dict(self._kept)
        new[name] = override
        self._write(new)
        return kept

    def clear(self, ref: RealRef) -> list[Kept]:
        """Remove the real's override (its maintenance file too); where it was kept."""
        name = names_of(ref)
        done: list[Kept] = []
        if self._maintenancedir:
            path = maintenance_file(self._maintenancedir, ref.address, ref.port)
            if path.exists():
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise OperatorError(f"cannot remove the maintenance file {path}: {exc.strerror}") from exc
                done.append(Kept("maintenancedir", str(path)))
        self._maint.pop(name[1], None)
        if name in self._kept:
            new = dict(self._kept)
            del new[name]
            self._write(new)
            done.append(Kept("state file", str(self.path)))
        return done

    def _write(self, kept: dict[Name, Override]) -> None:
        doc = {"version": VERSION, "overrides": [
            {"proxy": proxy, "server": server, "state": o.state, "weight": o.weight, "since": o.since}
            for (proxy, server), o in sorted(kept.items())]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_file(tmp, json.dumps(doc, indent=1) + "\n", 0o600)  # never through a planted link
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise OperatorError(f"cannot write the operator state file {self.path}: {exc.strerror}") from exc
        self._kept = kept
