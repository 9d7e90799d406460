"""What saru.toml says, as frozen dataclasses: the director's data plane, HA, IPVS sync, cluster, API, BGP.

``Settings`` is the whole file (``Settings()`` is the empty one); ``saru.config.native`` reads and
validates the TOML into these types, and everything else (the daemon, ``saru.ha``, the IPVS sync
daemons, ``saru cluster``) only reads them. docs/settings.md is the reference for every key.
Nothing in this module does I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from saru.model.core import Diagnostic, split_hostport

#: the values of ``[director] dataplane`` (and of ``SARU_DATAPLANE``)
DATAPLANES = ("auto", "ipvs", "nft", "proxy")


@dataclass(frozen=True)
class DirectorSettings:
    """``[director]``: which ldirectord.cf to run, on which data plane, as which users."""

    config: str | None = None  # absolute path once loaded
    dataplane: str = "auto"
    #: who a daemon started as root becomes (None: not written, i.e. ``saru``, else ``nobody``)
    user: str | None = None
    #: who external checks, callbacks, fallback commands, notify scripts and sendmail run as (same default)
    command_user: str | None = None
    #: False: a daemon started as root stays root (``saru run --no-drop``)
    drop_privileges: bool = True
    #: percent of a virtual's reals failing together that puts it in panic mode (its table is kept;
    #: ``saru.planner.panic_start``); 0: off
    panic_threshold: int = 50
    #: True: connections to a real that left the table (down, removed) are ended at once, like IPVS's
    #: ``net.ipv4.vs.expire_nodest_conn=1``; False: they run on until their ends close them. None (not
    #: written): off on the proxy and nftables planes, and the IPVS sysctl is left as the kernel has it
    expire_nodest_conn: bool | None = None


@dataclass(frozen=True)
class PingSettings:
    """``[ha.ping]``: the guide's pingd score. Effective priority = priority - multiplier x unreachable."""

    hosts: tuple[str, ...] = ()
    multiplier: int = 50
    interval: float = 1.0  # seconds between rounds
    timeout: float = 1.0  # seconds to wait for each echo reply
    attempts: int = 2  # consecutive lost rounds before a host counts as unreachable


@dataclass(frozen=True)
class HASettings:
    """``[ha]``: the floating IP and how the pair of directors decides who holds it."""

    mode: Literal["vrrp", "pacemaker"] = "vrrp"
    interface: str = ""
    vips: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...] = ()
    virtual_router_id: int = 51
    priority: int = 100
    advert_interval: float = 0.1  # seconds; VRRPv3 centiseconds, 0.01 - 40.95
    preempt: bool = False  # the guide's "no fail-back"
    preempt_delay: float = 0.0
    unicast_peers: tuple[str, ...] = ()  # empty: multicast 224.0.0.18 / ff02::12
    unicast_source: str | None = None  # default: the interface's primary address
    vipcheck: bool = True
    vipcheck_timeout: float = 0.2
    garp_repeat: int = 5
    garp_interval: float = 0.1
    warm_standby: bool = False  # program the table on the backup too (faster failover)
    notify: tuple[str, ...] = ()  # argv run on every transition, + state name, vrid, priority
    notify_master: tuple[str, ...] = ()
    notify_backup: tuple[str, ...] = ()
    notify_fault: tuple[str, ...] = ()
    ping: PingSettings | None = None

    @property
    def vip_addresses(self) -> tuple[str, ...]:
        """The VIPs as bare addresses (no prefix length)."""
        return tuple(str(v.ip) for v in self.vips)


#: ``[nft] nat``: how the nftables data plane forwards NAT virtuals (``saru.dataplane.nft.stateless``)
NFT_NAT_MODES = ("stateful", "stateless")


@dataclass(frozen=True)
class NftSettings:
    """``[nft]``: the nftables data plane. ``nat``: ``stateful`` (conntrack + dnat) or ``stateless``;
    ``flowtable``: the devices NAT flows cross, whose established flows are offloaded to a flowtable
    (``saru.dataplane.nft.offload``; empty: no offload)."""

    nat: str = "stateful"
    flowtable: tuple[str, ...] = ()


@dataclass(frozen=True)
class IPVSSyncSettings:
    """``[ipvs.sync]``: the kernel's connection synchronisation daemon (ipvsadm --start-daemon)."""

    interface: str
    syncid: int = 0
    role: Literal["both", "master", "backup", "follow-ha"] = "both"
    mcast_group: str | None = None  # kernel default 224.0.0.81 (ff02::8:81 is not a default)
    port: int = 8848
    ttl: int = 1
    maxlen: int = 0  # 0: the kernel's default (MTU based)


@dataclass(frozen=True)
class ClusterSettings:
    """``[cluster]``: what ``saru cluster crm|pcs`` generates (names default to the guide's)."""

    agent: Literal["saru", "ldirectord"] = "saru"
    vipcheck_agent: Literal["saru", "heartbeat"] = "saru"
    group: str = "GrpBalancer"
    vipcheck_name: str = "VIPCHK1"
    vip_name: str = "LB_VIP"
    director_name: str = "LDIRECTOR1"
    ping_name: str = "PINGD"
    ping_attribute: str = "pingd_score"
    monitor_interval: int = 30
    monitor_timeout: int = 60
    start_delay: int = 5
    stop_timeout: int = 60
    ping_interval: int = 10


@dataclass(frozen=True)
class CheckSettings:
    """``[checks]``: how the health checks behave beyond what ldirectord.cf says."""

    #: offer each TLS server the session of its last full handshake (false: a full handshake every check)
    tls_session_resumption: bool = True


#: ``[api] listen``'s default
API_LISTEN = "127.0.0.1:9180"


@dataclass(frozen=True)
class Endpoint:
    """Where the HTTP API listens: a TCP ``host``/``port`` or a unix socket ``path``."""

    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def unix(self) -> bool:
        return bool(self.path)

    @property
    def loopback(self) -> bool:
        """A unix socket, or a TCP address only this host can reach (127.0.0.0/8, ::1, localhost)."""
        if self.unix:
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        if self.unix:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> Endpoint | None:
    """``[api] listen``: ``""`` (off: None), ``unix:/PATH``, ``HOST:PORT`` or ``[V6]:PORT`` (HOST an IP
    address or ``localhost``); ValueError saying what is wrong."""
    if text == "":
        return None
    if text.startswith("unix:"):
        path = text[5:]
        if not path.startswith("/") or "\0" in path:
            raise ValueError(f"{text!r}: a unix socket needs an absolute path (unix:/run/saru/api.sock)")
        return Endpoint(path=path)
    parts = split_hostport(text)
    if parts is None:
        expected = "[IPV6]:PORT" if text.startswith("[") else "HOST:PORT, [IPV6]:PORT or unix:/PATH"
        raise ValueError(f"{text!r}: expected {expected}")
    host, port_text, bracketed = parts
    version = 6 if bracketed else 4
    if host != "localhost" or version == 6:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IP address (or localhost)") from None
        if address.version != version:
            raise ValueError(f"{text!r}: an IPv6 address goes in brackets, [{host}]:PORT")
        host = str(address)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number 1-65535")
    return Endpoint(host=host, port=int(port_text))


@dataclass(frozen=True)
class APISettings:
    """``[api]``: the HTTP API, metrics and dashboard (``saru.api``). ``endpoint`` is None when off."""

    listen: str = API_LISTEN
    token_file: str | None = None  # absolute path once loaded
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure: bool = False

    @property
    def endpoint(self) -> Endpoint | None:
        return parse_listen(self.listen)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None


#: ``[bgp] down``'s values: withdraw the route, or keep announcing it with ``down_med``
BGP_DOWN: tuple[Literal["withdraw", "med"], ...] = ("withdraw", "med")


@dataclass(frozen=True)
class BGPNeighbor:
    """One ``[[bgp.neighbors]]`` table: a router this director announces its VIPs to."""

    address: str
    asn: int
    password: str | None = None
    bfd: bool = False


@dataclass(frozen=True)
class BGPSettings:
    """``[bgp]``: active-active directors announcing their VIPs to routers (saru.bgp, docs/scale-out.md).

    Saru drives a routing daemon (BIRD 2) that speaks BGP; ``manage`` = True: Saru writes its
    configuration and runs it, False: the operator's daemon at ``socket`` includes what Saru writes."""

    asn: int
    router_id: str
    neighbors: tuple[BGPNeighbor, ...]
    vips: tuple[str, ...] = ()  # empty: every VIP of the config
    down: Literal["withdraw", "med"] = "withdraw"
    med: int = 0  # the MED of a VIP this director can serve
    down_med: int = 1000  # the MED of one it cannot serve (down = "med")
    hold_time: int = 90  # seconds; keepalives every third of it
    bfd_interval: float = 0.1  # seconds between BFD packets (both directions)
    bfd_multiplier: int = 3  # missed BFD packets before the session is down
    manage: bool = True
    socket: str | None = None  # the routing daemon's control socket; None: next to Saru's control socket


@dataclass(frozen=True)
class Settings:
    """Everything saru.toml says; ``Settings()`` is the empty file."""

    path: str | None = None
    director: DirectorSettings = field(default_factory=DirectorSettings)
    ha: HASettings | None = None
    ipvs_sync: IPVSSyncSettings | None = None
    nft: NftSettings = field(default_factory=NftSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    checks: CheckSettings = field(default_factory=CheckSettings)
    #: ``[api]``; None without the section (no HTTP API)
    api: APISettings | None = None
    #: ``[bgp]``; None without the section (no route announcements)
    bgp: BGPSettings | None = None
    warnings: tuple[Diagnostic, ...] = ()
