"""Saru's domain types: immutable values, no I/O; every other package speaks them.

* ``core``: the configuration model (``Config``, ``VirtualConfig``, ``RealConfig``…) read from
  ldirectord.cf, the forwarding table (``ServiceKey``, ``Service``, ``Dest``, ``Table``) and the
  operations (``Op`` subclasses) between tables, the health vocabulary (``CheckSpec``,
  ``CheckResult``, ``RealRef``) and ``Diagnostic``;
* ``settings``: what saru.toml says (``Settings``, ``DirectorSettings``, ``HASettings``,
  ``PingSettings``, ``IPVSSyncSettings``, ``ClusterSettings``), read by ``saru.config.native``;
* ``operator``: an operator's overrides of a real (``Override``: drain, disable, weight);
* ``schedflags``: the one parser and formatter of IPVS scheduler flags (import it as a module:
  ``from saru.model.schedflags import parse_schedflags``).

``from saru.model import X`` gives every type of ``core``, ``operator`` and ``settings``.
"""

from saru.model.core import (
    FORWARD_FLAGS,
    FORWARD_NAMES,
    AddDest,
    AddService,
    CheckResult,
    CheckSpec,
    Config,
    DelDest,
    DelService,
    Dest,
    Diagnostic,
    EditDest,
    EditService,
    FallbackConfig,
    Forward,
    GlobalConfig,
    Op,
    Protocol,
    RealConfig,
    RealRef,
    Service,
    ServiceKey,
    ServiceSettings,
    Table,
    VirtualConfig,
    address_family,
    format_hostport,
    split_hostport,
)
from saru.model.operator import OVERRIDE_STATES, Override, Overrides, OverrideState
from saru.model.settings import (
    API_LISTEN,
    DATAPLANES,
    APISettings,
    CheckSettings,
    ClusterSettings,
    DirectorSettings,
    Endpoint,
    HASettings,
    IPVSSyncSettings,
    PingSettings,
    Settings,
    parse_listen,
)

__all__ = [
    "API_LISTEN",
    "DATAPLANES",
    "FORWARD_FLAGS",
    "FORWARD_NAMES",
    "OVERRIDE_STATES",
    "APISettings",
    "AddDest",
    "AddService",
    "CheckResult",
    "CheckSettings",
    "CheckSpec",
    "ClusterSettings",
    "Config",
    "DelDest",
    "DelService",
    "Dest",
    "Diagnostic",
    "DirectorSettings",
    "EditDest",
    "EditService",
    "Endpoint",
    "FallbackConfig",
    "Forward",
    "GlobalConfig",
    "HASettings",
    "IPVSSyncSettings",
    "Op",
    "Override",
    "OverrideState",
    "Overrides",
    "PingSettings",
    "Protocol",
    "RealConfig",
    "RealRef",
    "Service",
    "ServiceKey",
    "ServiceSettings",
    "Settings",
    "Table",
    "VirtualConfig",
    "address_family",
    "format_hostport",
    "parse_listen",
    "split_hostport",
]
