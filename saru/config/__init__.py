"""Reading Saru's two configuration files; nothing here runs anything.

* ``ldirectord`` (package): ldirectord.cf, the virtual services → ``saru.model.Config``
  (``parse_file``, ``parse_text``);
* ``native``: saru.toml, what ldirectord.cf cannot say (data plane, HA, IPVS sync, cluster) →
  ``saru.model.Settings`` (``load_settings``, ``parse_settings``);
* ``diagnostics``: ``ConfigError``, which both raise with one ``FILE:LINE: message`` per problem;
* ``services``: ldirectord's service names and default ports (shared with the checks);
* ``json_view``: the JSON projection of a ``Config`` (``saru check-config --json``).

A bad file raises ``ConfigError`` and changes nothing; non-fatal findings are the ``warnings`` of
the value returned.
"""

from saru.config.diagnostics import ConfigError
from saru.config.ldirectord import Resolver, SystemResolver, parse_file, parse_text
from saru.config.native import load_settings, parse_settings

__all__ = [
    "ConfigError",
    "Resolver",
    "SystemResolver",
    "load_settings",
    "parse_file",
    "parse_settings",
    "parse_text",
]
