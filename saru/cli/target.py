"""Which daemon a command means: ``-c FILE`` (an ldirectord.cf or a saru.toml), ``--settings``, ``--control``.

One resolver for every command that takes ``-c``, so that ``saru run -c saru.toml`` and
``saru status -c saru.toml`` (or ``-c`` the ldirectord.cf the saru.toml names) find the same daemon:

* a file whose name ends in ``.toml`` is a saru.toml; its ``[director] config`` names the
  ldirectord.cf. Anything else is an ldirectord.cf. ``--settings`` adds a saru.toml to an
  ldirectord.cf (giving two saru.toml files is an error).
* the daemon's control socket is ``--control`` when given, else the one named after the
  ldirectord.cf (``saru.control.default_socket_path``), else — no file given at all — the default
  instance's (``ldirectord.cf``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from saru.config.native import load_settings
from saru.control import default_socket_path
from saru.model import Settings

#: the config file name of the default instance (``saru status`` without ``-c``), like ldirectord's
DEFAULT_CONFIG_NAME = "ldirectord.cf"


class TargetError(ValueError):
    """The ``-c``/``--settings``/``--control`` combination names no daemon or no config."""


@dataclass(frozen=True)
class Target:
    """The files and the control socket of one daemon."""

    config: str | None  # the ldirectord.cf (None: no file given, or a saru.toml naming none)
    settings_path: str | None  # the saru.toml, if any
    settings: Settings
    control: Path

    @property
    def dataplane(self) -> str:
        """The data plane saru.toml asks for (``auto`` without one)."""
        return self.settings.director.dataplane


def is_settings_file(path: str) -> bool:
    """Whether ``-c path`` means a saru.toml (by its extension, as ``saru run`` decides)."""
    return path.endswith(".toml")


def split_files(config: str | None, settings: str | None) -> tuple[str | None, str | None]:
    """(ldirectord.cf, saru.toml) as given by ``-c`` and ``--settings``; TargetError for two saru.toml."""
    if config is not None and is_settings_file(config):
        if settings and Path(settings).resolve() != Path(config).resolve():
            raise TargetError(f"-c {config} is a saru.toml already; --settings {settings} would be a second one")
        return None, config
    return config, settings


def resolve_target(config: str | None, settings: str | None = None, control: str | None = None,
                   *, require_config: bool = False) -> Target:
    """The daemon that ``-c config`` / ``--settings settings`` / ``--control control`` mean.

    ``require_config``: the command needs an ldirectord.cf (run, plan). Raises ``ConfigError`` when
    the saru.toml is invalid, ``TargetError`` when the arguments name no ldirectord.cf (and no socket).
    """
    cf, toml = split_files(config, settings)
    loaded = load_settings(toml) if toml else Settings()
    if cf is None and toml is not None:
        cf = loaded.director.config
        if cf is None and (require_config or control is None):
            raise TargetError(f"{toml}: [director] config is not set, so it names no ldirectord.cf "
                              "(set it, or give the ldirectord.cf with -c"
                              + (")" if require_config else ", or the socket with --control)"))
    if cf is None and require_config:
        raise TargetError("no ldirectord.cf given (-c FILE)")
    socket = Path(control) if control else default_socket_path(cf or DEFAULT_CONFIG_NAME)
    return Target(config=cf, settings_path=toml, settings=loaded, control=socket)
