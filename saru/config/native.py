"""Reader of saru.toml, Saru's own settings file: what ldirectord.cf cannot say.

ldirectord.cf stays the description of the virtual services; saru.toml adds the director's data
plane, high availability (built-in VRRPv3, or a Pacemaker cluster that runs Saru as a resource), IPVS
connection synchronisation, the nftables plane's NAT mode and the Pacemaker configuration
``saru cluster`` generates. Every section is optional; an empty file means "ldirectord.cf and nothing else".

```toml
[director]
config = "/etc/ha.d/ldirectord.cf"   # relative paths are relative to this file
dataplane = "auto"

[ha]
mode = "vrrp"                        # or "pacemaker"
interface = "eth0"
vips = ["192.168.6.240/24"]
virtual_router_id = 51

[ha.ping]
hosts = ["192.168.6.1"]
multiplier = 50
```

Public API: ``load_settings(path)`` / ``parse_settings(text, path)`` returning ``Settings`` (the
types are ``saru.model``'s, from ``saru/model/settings.py``: this module only reads and checks); both
raise ``ConfigError`` with one ``FILE:LINE: message`` per problem (unknown keys, wrong types, values
out of range), so a bad file changes nothing. The reference is docs/ha.md and docs/configuration.md.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import pwd
import re
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from saru.config.diagnostics import ConfigError
from saru.model import (
    API_LISTEN,
    BGP_DOWN,
    DATAPLANES,
    NFT_NAT_MODES,
    APISettings,
    BGPNeighbor,
    BGPSettings,
    CheckSettings,
    ClusterSettings,
    Diagnostic,
    DirectorSettings,
    HASettings,
    IPVSSyncSettings,
    NftSettings,
    PingSettings,
    Settings,
    parse_listen,
)

# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------

#: a TOML table as ``tomllib`` gives it (a document: its values are strings, numbers, lists, tables…)
TomlTable = dict[str, Any]
T = TypeVar("T")
D = TypeVar("D")
C = TypeVar("C", bound=str)


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read and validate saru.toml; ``ConfigError`` if it cannot be read or is invalid."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Diagnostic(name, 0, f"cannot read settings: {exc}")]) from exc
    settings = parse_settings(text, name)
    settings = _check_token_file(settings, name, text)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return settings
    if mode & 0o004 and _has_secret(text):
        warning = Diagnostic(name, 0, "file is world-readable and holds a secret (token/password): "
                                      "chmod o-r", "warning")
        settings = _with_warning(settings, warning)
    return settings


def parse_settings(text: str, path: str = "<string>") -> Settings:
    """Validate saru.toml text; relative paths are resolved against ``path``'s directory."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _decode_error_line(str(exc), text)
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError([Diagnostic(path, line, f"not valid TOML: {message}")]) from exc
    except RecursionError:  # tomllib recurses once per level of nested arrays/inline tables
        raise ConfigError([Diagnostic(path, _deep_line(text), "not valid TOML: arrays or inline tables "
                                      "nested too deeply")]) from None
    reader = _Reader(text, path)
    settings = reader.settings(data)
    if reader.problems:
        raise ConfigError(sorted(reader.problems, key=lambda d: d.line))
    return settings


def _decode_error_line(message: str, text: str) -> int:
    """The line tomllib names; "at end of document" is the file's last line (never line 0)."""
    match = re.search(r"at line (\d+)", message)
    return int(match.group(1)) if match else max(1, len(text.split("\n")))


def _deep_line(text: str, depth: int = 64) -> int:
    """The line where arrays/inline tables first nest ``depth`` deep (strings and comments skipped,
    best effort: this only places the error message); 0 when no such line is found."""
    level, line, quote, comment = 0, 1, "", False
    escaped = False
    for char in text:
        if char == "\n":
            line += 1
            comment = False
            quote = ""  # a multi-line string is seen as several one-line ones: good enough here
            continue
        if comment:
            continue
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "\"'":
            quote = char
        elif char == "#":
            comment = True
        elif char in "[{":
            level += 1
            if level >= depth:
                return line
        elif char in "]}":
            level = max(0, level - 1)
    return 0


def _check_token_file(settings: Settings, name: str, text: str) -> Settings:
    """``[api] token_file`` must hold a token (ConfigError otherwise); world-readable gets a warning."""
    token_file = settings.api.token_file if settings.api is not None else None
    if token_file is None:
        return settings
    line = next((n for n, content in enumerate(text.splitlines(), 1) if re.match(r"\s*token_file\s*=", content)), 0)
    try:
        token = Path(token_file).read_text(encoding="utf-8").strip()
        mode = os.stat(token_file).st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError([Diagnostic(name, line, f"[api] token_file: cannot read {token_file}: {reason}")]) from exc
    if not token:
        raise ConfigError([Diagnostic(name, line, f"[api] token_file: {token_file} is empty (put the write "
                                                  "token in it, e.g. openssl rand -hex 32)")])
    if mode & 0o004:
        settings = _with_warning(settings, Diagnostic(name, line, f"[api] token_file: {token_file} is "
                                                      "world-readable and holds the API's write token: chmod o-r",
                                                      "warning"))
    return settings


def _has_secret(text: str) -> bool:
    # ``token_file`` names a file (it gets its own warning), it is not a secret itself
    return re.search(r"^\s*(?!token_file\b)(token|password|secret)\w*\s*=", text,
                     re.MULTILINE | re.IGNORECASE) is not None


def _with_warning(settings: Settings, warning: Diagnostic) -> Settings:
    return replace(settings, warnings=(*settings.warnings, warning))


_HEADER = re.compile(r"^\s*\[\[?([^\[\]]+)\]\]?")
_KEY = re.compile(r"""^\s*("[^"\n]*"|'[^'\n]*'|[A-Za-z0-9_-]+)\s*=""")


def _table_name(inner: str) -> str:
    """``[ ha . "ping" ]`` → ``ha.ping``."""
    return ".".join(part.strip().strip("\"'") for part in inner.split("."))


class _LineIndex:
    """Where each table header and each ``key =`` line is, read in one pass over the text (so that
    locating N problems costs O(lines + N), not O(lines x N))."""

    def __init__(self, text: str) -> None:
        self.headers: dict[str, int] = {}  # table name (and each dotted prefix) → its first header line
        self.keys: dict[tuple[str, str], int] = {}  # (table, key) → line; table "" is the top level
        self.anywhere: dict[str, int] = {}  # key → first line, whatever the table
        table = ""
        for number, line in enumerate(text.splitlines(), 1):
            header = _HEADER.match(line)
            if header:
                table = _table_name(header.group(1))
                parts = table.split(".")
                for end in range(len(parts), 0, -1):
                    self.headers.setdefault(".".join(parts[:end]), number)
                continue
            key = _KEY.match(line)
            if key:
                name = key.group(1).strip("\"'")
                self.keys.setdefault((table, name), number)
                self.anywhere.setdefault(name, number)

    def line_of(self, section: str, key: str | None) -> int:
        if not section:  # a top-level key, or a table given by its header
            if key is None:
                return 0
            return self.keys.get(("", key)) or self.headers.get(key) or self.anywhere.get(key, 0)
        if key is None:
            return self.headers.get(section, 0)
        if section in self.headers:
            return (self.keys.get((section, key)) or self.headers.get(f"{section}.{key}")
                    or self.headers[section])
        return self.anywhere.get(key, 0)


class _Reader:
    """Walks the parsed TOML, collecting every problem with the line it comes from."""

    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.text = text
        self._lines: _LineIndex | None = None  # built at the first problem, once
        self.problems: list[Diagnostic] = []
        self.base = Path(path).resolve().parent if path != "<string>" else Path.cwd()

    # -- locating ---------------------------------------------------------------------------------

    def _index(self) -> _LineIndex:
        if self._lines is None:
            self._lines = _LineIndex(self.text)
        return self._lines

    def line_of(self, section: str, key: str | None = None) -> int:
        """The line of ``key`` inside ``[section]`` (or of the section header), best effort."""
        return self._index().line_of(section, key)

    def error(self, section: str, key: str | None, message: str) -> None:
        line = self.line_of(section, key)
        if not section:  # a top-level key or table
            self.problems.append(Diagnostic(self.path, line, f"{_show(key or '')}: {message}"))
            return
        where = f"[{section}] {_show(key)}" if key else f"[{section}]"
        self.problems.append(Diagnostic(self.path, line, f"{where}: {message}"))

    # -- typed access -----------------------------------------------------------------------------

    def table(self, data: TomlTable, section: str, known: tuple[str, ...]) -> TomlTable:
        for key in data:
            if key not in known:
                hint = _closest(key, known)
                self.error(section, key, f"unknown key{hint}; known keys: {', '.join(known)}")
        return data

    def get(self, data: TomlTable, section: str, key: str, kind: type[T], default: D,
            check: Callable[[T], str | None] | None = None) -> T | D:
        """``data[key]`` when it is a ``kind`` (an integer counts as a float) that passes ``check``;
        else an error is recorded and ``default`` returned (also when the key is absent)."""
        if key not in data:
            return default
        value: object = data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            self.error(section, key, f"expected {_TYPE_NAMES.get(kind, kind.__name__)}, got {_describe(value)}")
            return default
        if check is not None:
            problem = check(value)
            if problem:
                self.error(section, key, problem)
                return default
        return value

    def choice(self, data: TomlTable, section: str, key: str, choices: tuple[C, ...], default: C,
               message: str) -> C:
        """One of ``choices`` (the text ``message`` says what they are), else ``default``."""
        value = self.get(data, section, key, str, default, lambda v: None if v in choices else message)
        return next((c for c in choices if c == value), default)

    def strings(self, data: TomlTable, section: str, key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error(section, key, f"expected a list of strings, got {_describe(value)}")
            return ()
        return tuple(value)

    def command(self, data: TomlTable, section: str, key: str) -> tuple[str, ...]:
        """A command: a list of strings (argv) or one string split like a shell would (no shell runs)."""
        value = data.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            try:
                argv = tuple(shlex.split(value))
            except ValueError as exc:
                self.error(section, key, f"cannot split command: {exc}")
                return ()
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            argv = tuple(value)
        else:
            self.error(section, key, f"expected a command (string or list of strings), got {_describe(value)}")
            return ()
        if any("\0" in arg for arg in argv):
            self.error(section, key, "contains a NUL byte (no program can take it as an argument)")
            return ()
        return argv

    # -- sections ---------------------------------------------------------------------------------

    def settings(self, data: TomlTable) -> Settings:
        self.table(data, "", ("director", "ha", "ipvs", "nft", "cluster", "checks", "api", "bgp"))
        director = self.director(self.section(data, "director"))
        ha = self.ha(self.section(data, "ha")) if "ha" in data else None
        ipvs = self.section(data, "ipvs")
        self.table(ipvs, "ipvs", ("sync",))
        sync = self.ipvs_sync(self.section(ipvs, "sync", "ipvs.sync")) if "sync" in ipvs else None
        nft = self.nft(self.section(data, "nft"))
        cluster = self.cluster(self.section(data, "cluster"))
        checks = self.checks(self.section(data, "checks"))
        api = self.api(self.section(data, "api")) if "api" in data else None
        bgp = self.bgp(self.section(data, "bgp")) if "bgp" in data else None
        if bgp is not None and ha is not None:
            self.error("bgp", None, "[bgp] and [ha] are alternatives: active-active directors announce their "
                                    "VIPs over BGP and need no floating IP (docs/scale-out.md)")
        return Settings(path=None if self.path == "<string>" else str(Path(self.path).resolve()),
                        director=director, ha=ha, ipvs_sync=sync, nft=nft, cluster=cluster, checks=checks,
                        api=api, bgp=bgp)

    def section(self, data: TomlTable, key: str, name: str | None = None) -> TomlTable:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.error(name or key, None, f"expected a table, got {_describe(value)}")
            return {}
        return value

    def director(self, data: TomlTable) -> DirectorSettings:
        s = "director"
        self.table(data, s, ("config", "dataplane", "user", "command_user", "drop_privileges", "panic_threshold",
                             "expire_nodest_conn"))
        config = self.get(data, s, "config", str, None, _path_problem)
        if config is not None:
            config = str((self.base / config).resolve()) if not os.path.isabs(config) else config
        dataplane = self.get(data, s, "dataplane", str, "auto",
                             lambda v: None if v in DATAPLANES else f"must be one of {', '.join(DATAPLANES)}")
        return DirectorSettings(config=config, dataplane=dataplane,
                                user=self.get(data, s, "user", str, None, _user_problem),
                                command_user=self.get(data, s, "command_user", str, None, _user_problem),
                                drop_privileges=self.get(data, s, "drop_privileges", bool, True),
                                panic_threshold=self.get(data, s, "panic_threshold", int, 50, _range(0, 100)),
                                expire_nodest_conn=self.get(data, s, "expire_nodest_conn", bool, None))

    def ha(self, data: TomlTable) -> HASettings:
        s = "ha"
        known = ("mode", "interface", "vips", "virtual_router_id", "priority", "advert_interval", "preempt",
                 "preempt_delay", "unicast_peers", "unicast_source", "vipcheck", "vipcheck_timeout",
                 "garp_repeat", "garp_interval", "warm_standby", "notify", "notify_master", "notify_backup",
                 "notify_fault", "ping")
        self.table(data, s, known)
        mode: Literal["vrrp", "pacemaker"] = self.choice(data, s, "mode", ("vrrp", "pacemaker"), "vrrp",
                                                         'must be "vrrp" or "pacemaker"')
        interface = self.get(data, s, "interface", str, "", _interface_name)
        if not interface and "interface" not in data:
            self.error(s, None, "interface is required (the link the floating IP lives on)")
        vips = []
        for text in self.strings(data, s, "vips"):
            try:
                vip = ipaddress.ip_interface(text)
            except ValueError:
                self.error(s, "vips", f"{text!r} is not an address with an optional /prefix")
                continue
            if "/" not in text:  # like IPaddr2 without cidr_netmask: a host route; say /24 explicitly
                vip = ipaddress.ip_interface(f"{text}/{vip.max_prefixlen}")
            vips.append(vip)
        if not vips and "vips" not in data:
            self.error(s, None, "vips is required (the floating addresses)")
        elif not vips and not self.problems:
            self.error(s, "vips", "needs at least one address")
        peers = []
        for text in self.strings(data, s, "unicast_peers"):
            try:
                peers.append(str(ipaddress.ip_address(text)))
            except ValueError:
                self.error(s, "unicast_peers", f"{text!r} is not an IP address")
        source = self.get(data, s, "unicast_source", str, None, _ip_problem)
        ping = self.ping(self.section(data, "ping", "ha.ping")) if "ping" in data else None
        return HASettings(
            mode=mode, interface=interface, vips=tuple(vips),
            virtual_router_id=self.get(data, s, "virtual_router_id", int, 51, _range(1, 255)),
            priority=self.get(data, s, "priority", int, 100, _priority),
            advert_interval=self.get(data, s, "advert_interval", float, 0.1, _interval),
            preempt=self.get(data, s, "preempt", bool, False),
            preempt_delay=self.get(data, s, "preempt_delay", float, 0.0, _range(0, 1000)),
            unicast_peers=tuple(peers), unicast_source=source,
            vipcheck=self.get(data, s, "vipcheck", bool, True),
            vipcheck_timeout=self.get(data, s, "vipcheck_timeout", float, 0.2, _range(0.01, 10)),
            garp_repeat=self.get(data, s, "garp_repeat", int, 5, _range(0, 100)),
            garp_interval=self.get(data, s, "garp_interval", float, 0.1, _range(0.01, 10)),
            warm_standby=self.get(data, s, "warm_standby", bool, False),
            notify=self.command(data, s, "notify"),
            notify_master=self.command(data, s, "notify_master"),
            notify_backup=self.command(data, s, "notify_backup"),
            notify_fault=self.command(data, s, "notify_fault"),
            ping=ping,
        )

    def ping(self, data: TomlTable) -> PingSettings:
        s = "ha.ping"
        self.table(data, s, ("hosts", "multiplier", "interval", "timeout", "attempts"))
        hosts = []
        for text in self.strings(data, s, "hosts"):
            try:
                hosts.append(str(ipaddress.ip_address(text)))
            except ValueError:
                self.error(s, "hosts", f"{text!r} is not an IP address (names are not resolved here)")
        if not hosts and not self.problems:
            self.error(s, "hosts", "needs at least one upstream address to ping")
        return PingSettings(
            hosts=tuple(hosts),
            multiplier=self.get(data, s, "multiplier", int, 50, _range(1, 254)),
            interval=self.get(data, s, "interval", float, 1.0, _range(0.05, 3600)),
            timeout=self.get(data, s, "timeout", float, 1.0, _range(0.01, 60)),
            attempts=self.get(data, s, "attempts", int, 2, _range(1, 100)),
        )

    def ipvs_sync(self, data: TomlTable) -> IPVSSyncSettings:
        s = "ipvs.sync"
        self.table(data, s, ("interface", "syncid", "role", "mcast_group", "port", "ttl", "maxlen"))
        interface = self.get(data, s, "interface", str, "", _interface_name)
        if not interface and "interface" not in data:
            self.error(s, None, "interface is required (where sync messages are multicast)")
        return IPVSSyncSettings(
            interface=interface,
            syncid=self.get(data, s, "syncid", int, 0, _range(0, 255)),
            role=self.choice(data, s, "role", ("both", "master", "backup", "follow-ha"), "both",
                             'must be "both", "master", "backup" or "follow-ha"'),
            mcast_group=self.get(data, s, "mcast_group", str, None, _multicast_problem),
            port=self.get(data, s, "port", int, 8848, _range(1, 65535)),
            ttl=self.get(data, s, "ttl", int, 1, _range(1, 255)),
            maxlen=self.get(data, s, "maxlen", int, 0, _range(0, 65507)),
        )

    def nft(self, data: TomlTable) -> NftSettings:
        s = "nft"
        self.table(data, s, ("nat", "flowtable"))
        nat = self.choice(data, s, "nat", NFT_NAT_MODES, "stateful", 'must be "stateful" or "stateless"')
        devices: list[str] = []
        for name in self.strings(data, s, "flowtable"):
            problem = _interface_name(name)
            if problem:
                self.error(s, "flowtable", problem)
            elif name in devices:
                self.error(s, "flowtable", f"{name!r} is listed twice")
            else:
                devices.append(name)
        if devices and nat != "stateful":
            self.error(s, "flowtable", 'offloads conntrack\'s NAT flows, and nat = "stateless" has none: '
                                      'choose one of them')
        return NftSettings(nat=nat, flowtable=tuple(devices))

    def checks(self, data: TomlTable) -> CheckSettings:
        s = "checks"
        self.table(data, s, ("tls_session_resumption",))
        return CheckSettings(tls_session_resumption=self.get(data, s, "tls_session_resumption", bool, True))

    def api(self, data: TomlTable) -> APISettings:
        s = "api"
        self.table(data, s, ("listen", "token_file", "tls_cert", "tls_key", "insecure"))

        def listen_problem(value: str) -> str | None:
            try:
                parse_listen(value)
            except ValueError as exc:
                return str(exc)
            return None

        listen = self.get(data, s, "listen", str, API_LISTEN, listen_problem)
        paths = {key: self.get(data, s, key, str, None, _path_problem) for key in ("token_file", "tls_cert", "tls_key")}
        for key, value in paths.items():
            if value is not None and not os.path.isabs(value):
                paths[key] = str((self.base / value).resolve())
        insecure = self.get(data, s, "insecure", bool, False)
        settings = APISettings(listen=listen, token_file=paths["token_file"], tls_cert=paths["tls_cert"],
                               tls_key=paths["tls_key"], insecure=insecure)
        if (settings.tls_cert is None) != (settings.tls_key is None):
            self.error(s, "tls_cert" if settings.tls_cert is None else "tls_key",
                       "tls_cert and tls_key go together (the certificate and its private key)")
        endpoint = settings.endpoint if listen_problem(listen) is None else None
        if endpoint is not None and not endpoint.loopback and not settings.insecure \
                and not (settings.token_file and settings.tls):
            self.error(s, "listen", f"{listen} is reachable from other hosts: set token_file and "
                                    "tls_cert/tls_key (writes need the token, and it must not cross the "
                                    "network in clear), or insecure = true to accept the risk")
        return settings

    def bgp(self, data: TomlTable) -> BGPSettings:
        s = "bgp"
        known = ("asn", "router_id", "vips", "down", "med", "down_med", "hold_time", "bfd_interval",
                 "bfd_multiplier", "manage", "socket", "neighbors")
        self.table(data, s, known)
        for key in ("asn", "router_id"):
            if key not in data:
                self.error(s, None, f"{key} is required")
        router_id = self.get(data, s, "router_id", str, "0.0.0.0", _ipv4_problem)
        vips = []
        for text in self.strings(data, s, "vips"):
            try:
                vips.append(str(ipaddress.ip_address(text)))
            except ValueError:
                self.error(s, "vips", f"{text!r} is not an IP address (a VIP, without a /prefix)")
        raw = data.get("neighbors", [])
        if isinstance(raw, dict):  # one neighbour written as [bgp.neighbors]
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(n, dict) for n in raw):
            self.error(s, "neighbors", "expected [[bgp.neighbors]] tables")
            raw = []
        if not raw and "neighbors" not in data:
            self.error(s, None, "needs at least one [[bgp.neighbors]] (a router to announce to)")
        neighbors = [self.bgp_neighbor(n) for n in raw]
        seen = [n.address for n in neighbors]
        for address in sorted({a for a in seen if seen.count(a) > 1}):
            self.error("bgp.neighbors", "address", f"{address} is given twice")
        socket = self.get(data, s, "socket", str, None, _path_problem)
        if socket is not None and not os.path.isabs(socket):
            socket = str((self.base / socket).resolve())
        return BGPSettings(
            asn=self.get(data, s, "asn", int, 0, _asn_problem),
            router_id=router_id, neighbors=tuple(neighbors), vips=tuple(vips),
            down=self.choice(data, s, "down", BGP_DOWN, "withdraw", 'must be "withdraw" or "med"'),
            med=self.get(data, s, "med", int, 0, _range(0, 4294967295)),
            down_med=self.get(data, s, "down_med", int, 1000, _range(0, 4294967295)),
            hold_time=self.get(data, s, "hold_time", int, 90, _hold_time_problem),
            bfd_interval=self.get(data, s, "bfd_interval", float, 0.1, _range(0.01, 10)),
            bfd_multiplier=self.get(data, s, "bfd_multiplier", int, 3, _range(1, 255)),
            manage=self.get(data, s, "manage", bool, True),
            socket=socket,
        )

    def bgp_neighbor(self, data: TomlTable) -> BGPNeighbor:
        s = "bgp.neighbors"
        self.table(data, s, ("address", "asn", "password", "bfd"))
        for key in ("address", "asn"):
            if key not in data:
                self.error(s, None, f"{key} is required in every [[bgp.neighbors]]")
        password = self.get(data, s, "password", str, None,
                            lambda v: "must not be empty or hold a quote, backslash or line break"
                            if not v or any(c in v for c in '"\\\n\r\0') else None)
        return BGPNeighbor(address=self.get(data, s, "address", str, "", _ip_problem),
                           asn=self.get(data, s, "asn", int, 0, _asn_problem),
                           password=password, bfd=self.get(data, s, "bfd", bool, False))

    def cluster(self, data: TomlTable) -> ClusterSettings:
        s = "cluster"
        default = ClusterSettings()
        known = tuple(default.__dataclass_fields__)
        self.table(data, s, known)
        values: dict[str, Any] = {}  # Any: each value is checked to be of its own field's type
        for key in known:
            current = getattr(default, key)
            if key == "agent":
                values[key] = self.choice(data, s, key, ("saru", "ldirectord"), current,
                                          'must be "saru" (ocf:saru:director) or "ldirectord" '
                                          "(ocf:heartbeat:ldirectord running saru-ldirectord)")
            elif key == "vipcheck_agent":
                values[key] = self.choice(data, s, key, ("saru", "heartbeat"), current,
                                          'must be "saru" (ocf:saru:VIPcheck) or "heartbeat" (ocf:heartbeat:VIPcheck)')
            elif isinstance(current, int):
                values[key] = self.get(data, s, key, int, current, _range(0, 86400))
            else:
                values[key] = self.get(data, s, key, str, current, _resource_name)
        return ClusterSettings(**values)


# --------------------------------------------------------------------------------------------------
# value checks
# --------------------------------------------------------------------------------------------------

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"{value!r} ({type(value).__name__})"


def _closest(key: str, known: tuple[str, ...]) -> str:
    match = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _range(low: float, high: float) -> Callable[[float], str | None]:
    def check(value: float) -> str | None:
        if low <= value <= high:
            return None
        return f"{value} is out of range ({low:g}-{high:g})"
    return check


def _priority(value: int) -> str | None:
    if value == 255:
        return "255 is reserved for the address owner; use 1-253"
    if value == 254:
        return "254 is what a takeover (saru failover-test --back) advertises; use 1-253"
    return _range(1, 253)(value)


def _interval(value: float) -> str | None:
    if not 0.01 <= value <= 40.95:
        return f"{value:g} s is out of range: VRRPv3 advertises in centiseconds, 0.01-40.95 s"
    if abs(round(value * 100) - value * 100) > 1e-6:
        return f"{value:g} s is not a whole number of centiseconds (VRRPv3's unit)"
    return None


def _interface_name(value: str) -> str | None:
    """The kernel's rule (dev_valid_name): 1-15 bytes, not ``.`` or ``..``, no ``/``, ``:``,
    whitespace or NUL."""
    raw = value.encode("utf-8", "surrogateescape")
    if (not raw or len(raw) > 15 or value in (".", "..")
            or any(c in "/:\0" or c.isspace() for c in value)):
        return f"{value!r} is not a network interface name (1-15 bytes, no '/', ':', space or NUL)"
    return None


def _path_problem(value: str) -> str | None:
    if "\0" in value:
        return f"{value!r} contains a NUL byte"
    if not value:
        return "is empty"
    return None


def _user_problem(value: str) -> str | None:
    """A user name this host knows (``root`` too, when written)."""
    try:
        pwd.getpwnam(value)
    except (KeyError, ValueError):
        return f"{value!r}: no such user on this host (getent passwd {value})"
    return None


def _show(key: str) -> str:
    """A key as written when it is plain text, else its repr (NUL, control characters)."""
    return key if key.isprintable() else repr(key)


def _ip_problem(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    return None


def _ipv4_problem(value: str) -> str | None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return f"{value!r} is not an IPv4 address (a BGP router id is written as one)"
    return None


def _asn_problem(value: int) -> str | None:
    if not 1 <= value <= 4294967295 or value in (23456, 65535, 4294967295):
        return f"{value} is not a usable AS number (1-4294967294, not 23456 or 65535)"
    return None


def _hold_time_problem(value: int) -> str | None:
    if value == 0 or 3 <= value <= 65535:
        return None
    return f"{value} s: a BGP hold time is 0 (no keepalives) or 3-65535 s (RFC 4271)"


def _multicast_problem(value: str) -> str | None:
    try:
        if ipaddress.ip_address(value).is_multicast:
            return None
    except ValueError:
        pass
    return f"{value!r} is not a multicast address"


def _resource_name(value: str) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", value):
        return None
    return f"{value!r} is not a valid Pacemaker resource id"
