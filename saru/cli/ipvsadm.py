"""``saru ipvsadm``: ipvsadm's command line for whichever data plane runs.

Lists (``-L -n`` with ``--stats``, ``--rate``, ``--thresholds``, ``--persistent-conn``, ``--exact``;
``-L -n -c`` connection entries), saves (``-S``) and restores (``-R``) the table, edits it
(``-A -E -D -a -e -d -C``) and zeroes its counters (``-Z``) in ipvsadm's words and formats. By
default it talks to the running daemon through its control socket (``--config FILE`` or
``--control PATH`` say which); ``--dataplane ipvs|nft`` works on the kernel directly, without a
daemon — the guide's "manual LVS setup" step.

The IPVS connection-sync daemons (``--start-daemon master|backup`` with ``--mcast-interface``,
``--syncid``, ``--mcast-group``, ``--mcast-port``, ``--mcast-ttl``, ``--sync-maxlen``;
``--stop-daemon``; ``-L --daemon``) are kernel threads: these options always talk to the kernel's
IPVS directly, daemon or not. Host and service names are never resolved: listings are numeric.

As with ipvsadm, a direct-routing or tunnelling destination of a TCP/UDP service added or edited
(``-a``/``-e``) gets the service's port (``-d`` looks a destination up by the port given), ``-s``
defaults to ``wlc``, the forwarding method to ``-g`` and the weight to 1.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import shlex
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from saru.cli.target import resolve_target
from saru.compat.ipvsadm import format_connections, format_daemons, format_listing, format_rules
from saru.config.diagnostics import ConfigError
from saru.control import request
from saru.control.codec import key_to_dict, op_to_dict, table_from_list
from saru.dataplane.base import ConnEntry, Dataplane, DataplaneError, DestStats, ServiceStats
from saru.dataplane.select import select_dataplane
from saru.model import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    Dest,
    EditDest,
    EditService,
    Op,
    ServiceKey,
    ServiceSettings,
    Table,
)

if TYPE_CHECKING:
    from saru.dataplane.ipvs import SyncDaemon

EXIT_USAGE = 2
EXIT_FAILED = 255
DEFAULT_MCAST_INTERFACE = "eth0"  # ipvsadm's DEF_MCAST_IFN


class UsageError(Exception):
    """Bad arguments (exit 2, like ipvsadm's parse errors)."""


class OperationError(Exception):
    """The operation does not fit the table (exit 255 with ipvsadm's message)."""


def build_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("which table")
    target.add_argument("--config", metavar="FILE",
                        help="the daemon's ldirectord.cf or saru.toml (locates its control socket)")
    target.add_argument("--control", metavar="PATH", help="the daemon's control socket")
    target.add_argument("--dataplane", choices=("ipvs", "nft"),
                        help="work on the kernel's table directly, without a daemon")
    cmd = parser.add_mutually_exclusive_group()
    for flag, long, help_ in (
            ("-A", "--add-service", "add a virtual service"),
            ("-E", "--edit-service", "edit a virtual service"),
            ("-D", "--delete-service", "delete a virtual service and its real servers"),
            ("-C", "--clear", "clear the table"),
            ("-R", "--restore", "restore the rules read from standard input (-S's format) as one batch"),
            ("-S", "--save", "print the table as rules for -R"),
            ("-a", "--add-server", "add a real server to a virtual service"),
            ("-e", "--edit-server", "edit a real server"),
            ("-d", "--delete-server", "delete a real server"),
            ("-L", "--list", "list the table (-l too)"),
            ("-Z", "--zero", "zero the counters of one service, or of all")):
        cmd.add_argument(flag, long, dest=f"cmd_{flag[1]}", action="store_true", help=help_)
    parser.add_argument("-l", dest="cmd_L2", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("-t", "--tcp-service", metavar="SERVICE-ADDRESS", help="a TCP virtual service, HOST:PORT")
    parser.add_argument("-u", "--udp-service", metavar="SERVICE-ADDRESS", help="a UDP virtual service, HOST:PORT")
    parser.add_argument("-f", "--fwmark-service", metavar="FWMARK", type=int, help="a firewall-mark virtual service")
    parser.add_argument("-6", "--ipv6", action="store_true", help="fwmark service is IPv6")
    parser.add_argument("-s", "--scheduler", default=None, help="scheduling method (default wlc)")
    parser.add_argument("-p", "--persistent", nargs="?", const=300, type=int, metavar="TIMEOUT",
                        help="persistent service, timeout in seconds (default 300)")
    parser.add_argument("-M", "--netmask", help="granularity of persistence (client netmask or prefix length)")
    parser.add_argument("-b", "--sched-flags", help="scheduler flags, e.g. sh-fallback,sh-port")
    parser.add_argument("-o", "--ops", action="store_true", help="one-packet scheduling (UDP)")
    parser.add_argument("-r", "--real-server", metavar="SERVER-ADDRESS", help="a real server, HOST[:PORT]")
    fwd = parser.add_mutually_exclusive_group()
    fwd.add_argument("-g", "--gatewaying", dest="forward", action="store_const", const="gate",
                     help="direct routing (the default)")
    fwd.add_argument("-i", "--ipip", dest="forward", action="store_const", const="ipip", help="tunnelling (IPIP)")
    fwd.add_argument("-m", "--masquerading", dest="forward", action="store_const", const="masq", help="NAT")
    parser.add_argument("--tun-type", choices=("ipip",), help="tunnel type (ipip is the only one)")
    parser.add_argument("-w", "--weight", type=int, help="weight of the real server (default 1)")
    parser.add_argument("-x", "--u-threshold", type=int, help="upper connection threshold (0: none)")
    parser.add_argument("-y", "--l-threshold", type=int, help="lower connection threshold (0: none)")
    parser.add_argument("-n", "--numeric", action="store_true", help="numeric output (listings are always numeric)")
    parser.add_argument("-c", "--connection", action="store_true", help="with -L: list the connection entries")
    parser.add_argument("--exact", action="store_true", help="with -L: exact numbers (no K, M, G)")
    parser.add_argument("--stats", action="store_true", help="with -L: packet and byte counters")
    parser.add_argument("--rate", action="store_true", help="with -L: rates")
    parser.add_argument("--thresholds", action="store_true", help="with -L: connection thresholds")
    parser.add_argument("--persistent-conn", action="store_true", help="with -L: persistent connections")
    sync = parser.add_argument_group("connection synchronisation (the kernel's sync daemons)")
    sync.add_argument("--start-daemon", choices=("master", "backup"), help="start a connection-sync daemon")
    sync.add_argument("--stop-daemon", choices=("master", "backup"), help="stop a connection-sync daemon")
    sync.add_argument("--daemon", action="store_true", help="with -L: list the sync daemons")
    sync.add_argument("--mcast-interface", metavar="INTERFACE", help="the interface sync messages use")
    sync.add_argument("--syncid", type=int, metavar="SID", help="sync id, 0-255 (default 0)")
    sync.add_argument("--mcast-group", metavar="ADDRESS", help="multicast group (default 224.0.0.81)")
    sync.add_argument("--mcast-port", type=int, metavar="PORT", help="UDP port (default 8848)")
    sync.add_argument("--mcast-ttl", type=int, metavar="TTL", help="multicast TTL (default 1)")
    sync.add_argument("--sync-maxlen", type=int, metavar="SIZE",
                      help="maximum sync message size (default: from the MTU)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ipvsadm", help="ipvsadm-compatible view and editor of the table",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    build_arguments(p)
    p.set_defaults(func=run)


# ------------------------------------------------------------------ parsing into ops


def parse_hostport(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``1.2.3.4:80``, ``[::1]:80`` or a bare address (port default_port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise UsageError(f"illegal address {text!r} (give a numeric address)") from None
    if not port_text:
        if default_port is None:
            raise UsageError(f"missing port in {text!r}")
        return address, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"illegal port in {text!r}")
    return address, int(port_text)


def service_key(args: argparse.Namespace) -> ServiceKey | None:
    chosen = [x for x in (args.tcp_service, args.udp_service, args.fwmark_service) if x is not None]
    if len(chosen) > 1:
        raise UsageError("give only one of -t, -u, -f")
    if args.fwmark_service is not None:
        if args.fwmark_service <= 0:
            raise UsageError("illegal fwmark")
        return ServiceKey("fwm", "", 0, args.fwmark_service, 6 if args.ipv6 else 4)
    text = args.tcp_service if args.tcp_service is not None else args.udp_service
    if text is None:
        return None
    address, port = parse_hostport(text)
    family = ipaddress.ip_address(address).version
    return ServiceKey("tcp" if args.tcp_service is not None else "udp", address, port, None, family)


def service_settings(args: argparse.Namespace, base: ServiceSettings | None = None) -> ServiceSettings:
    base = base or ServiceSettings(scheduler="wlc")
    return ServiceSettings(
        scheduler=args.scheduler or base.scheduler,
        persistent=args.persistent if args.persistent is not None else base.persistent,
        netmask=args.netmask if args.netmask is not None else base.netmask,
        schedflags=args.sched_flags if args.sched_flags is not None else base.schedflags,
        ops=args.ops or base.ops,
    )


def _dest(args: argparse.Namespace, key: ServiceKey, old: Dest | None = None, *, rewrite: bool = True) -> Dest:
    """The destination ``-r`` names; ``rewrite``: ipvsadm's ``-a``/``-e`` rule that a DR or tunnelled
    destination of a TCP/UDP service takes the service's port (``-d`` looks up the port as given)."""
    if not args.real_server:
        raise UsageError("-r is needed for this command")
    address, port = parse_hostport(args.real_server, key.port)
    base = old or Dest(address, port)
    forward = args.forward or base.forward
    if rewrite and forward in ("gate", "ipip") and key.protocol != "fwm":
        port = key.port  # ipvsadm: DR and tunnelling deliver on the service's port
    return Dest(
        address=address, port=port, forward=forward,
        weight=args.weight if args.weight is not None else base.weight,
        upper_threshold=args.u_threshold if args.u_threshold is not None else base.upper_threshold,
        lower_threshold=args.l_threshold if args.l_threshold is not None else base.lower_threshold,
    )


def edit_ops(args: argparse.Namespace, table: Table) -> list[Op]:
    """The op one editing command stands for, checked against ``table`` like ipvsadm does."""
    if args.cmd_C:
        return [DelService(k) for k in table.services]
    key = service_key(args)
    if key is None:
        raise UsageError("a service is needed: -t, -u or -f")
    service = table.services.get(key)
    if args.cmd_A:
        if service is not None:
            raise OperationError("Service already exists")
        return [AddService(key, service_settings(args))]
    if service is None:
        raise OperationError("No such service")
    if args.cmd_E:
        return [EditService(key, service_settings(args, service.settings))]
    if args.cmd_D:
        return [DelService(key)]
    probe = _dest(args, key, rewrite=not args.cmd_d)
    old = service.dests.get(probe.key)
    if args.cmd_a:
        if old is not None:
            raise OperationError("Destination already exists")
        return [AddDest(key, probe)]
    if old is None:
        raise OperationError("No such destination")
    if args.cmd_e:
        return [EditDest(key, _dest(args, key, old))]
    return [DelDest(key, old.address, old.port)]


def restore_ops(lines: Sequence[str], table: Table, parser: argparse.ArgumentParser) -> list[Op]:
    """``-R``: every rule line applied in order to a working copy of the table."""
    from saru.diff import apply_ops

    ops: list[Op] = []
    working = table
    for number, line in enumerate(lines, 1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        try:
            args = parser.parse_args(words)
        except SystemExit:
            raise UsageError(f"line {number}: cannot parse {line.strip()!r}") from None
        try:
            step = edit_ops(args, working)
        except (UsageError, OperationError) as exc:
            raise type(exc)(f"line {number}: {exc}") from None
        working = apply_ops(working, step)
        ops.extend(step)
    return ops


# ------------------------------------------------------------------ talking to the table


class Target:
    """The table being worked on: a running daemon, or a kernel data plane opened directly."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.plane: Dataplane | None = None

    async def __aenter__(self) -> Target:
        if self.args.dataplane:
            self.plane, _ = select_dataplane(self.args.dataplane)
            await self.plane.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.plane is not None:
            await self.plane.close()

    async def _ask(self, command: str, **params: Any) -> dict[str, Any]:
        args = self.args
        try:
            path = resolve_target(args.config, None, args.control).control
        except (ConfigError, ValueError) as exc:  # an invalid saru.toml, or one naming no ldirectord.cf
            raise UsageError(str(exc)) from None
        try:
            answer = await request(path, command, timeout=30, **params)
        except OSError as exc:
            raise OperationError(f"cannot reach the daemon at {path}: {exc.strerror or exc} "
                                 "(start it, or use --dataplane ipvs|nft)") from None
        if not answer.get("ok"):
            raise OperationError(str(answer.get("error")))
        return answer

    async def table(self) -> Table:
        if self.plane is not None:
            return await self.plane.read()
        return table_from_list((await self._ask("table"))["table"])

    async def stats(self) -> dict[ServiceKey, ServiceStats]:
        if self.plane is not None:
            return await self.plane.stats()
        answer = await self._ask("stats")
        result: dict[ServiceKey, ServiceStats] = {}
        from saru.control.codec import key_from_dict

        for item in answer["stats"]:
            dests = {(d["address"], d["port"]): DestStats(**d["counters"]) for d in item["dests"]}
            result[key_from_dict(item["service"])] = ServiceStats(
                connections=item["connections"], bytes_in=item["bytes_in"], bytes_out=item["bytes_out"],
                dests=dests)
        return result

    async def apply(self, ops: list[Op]) -> None:
        if not ops:
            return
        if self.plane is not None:
            await self.plane.apply(ops)
        else:
            await self._ask("apply", ops=[op_to_dict(op) for op in ops])

    async def zero(self, key: ServiceKey | None) -> None:
        if self.plane is not None:
            await self.plane.zero(key)
        else:
            await self._ask("zero", service=key_to_dict(key) if key is not None else None)

    async def connections(self) -> list[ConnEntry]:
        if self.plane is not None:
            return await self.plane.connections()
        answer = await self._ask("connections")
        return [ConnEntry(protocol=e["protocol"], client=tuple(e["client"]),
                          virtual=tuple(e["virtual"]), dest=tuple(e["dest"]),
                          state=e["state"], expires=float(e["expires"]))
                for e in answer["connections"]]

    async def ipvs(self) -> Dataplane:
        """The kernel's IPVS, for the sync daemons (whatever plane the daemon runs)."""
        if self.args.dataplane == "nft":
            raise OperationError("sync daemons are part of IPVS, not of the nftables data plane")
        if self.plane is not None:
            return self.plane
        self.plane, _ = select_dataplane("ipvs")
        await self.plane.start()
        return self.plane


def sync_daemon(args: argparse.Namespace) -> SyncDaemon:
    """``--start-daemon``'s daemon, checked like ipvsadm checks it."""
    from saru.dataplane.ipvs import SyncDaemon

    if args.syncid is not None and not 0 <= args.syncid <= 255:
        raise UsageError("illegal syncid specified")
    if args.mcast_port is not None and not 1 <= args.mcast_port <= 65535:
        raise UsageError("illegal mcast-port specified")
    if args.mcast_ttl is not None and not 1 <= args.mcast_ttl <= 255:
        raise UsageError("illegal mcast-ttl specified")
    if args.sync_maxlen is not None and not 1 <= args.sync_maxlen <= 65535 - 20 - 8:
        raise UsageError("illegal sync-maxlen specified")
    group = args.mcast_group
    if group is not None:
        try:
            if not ipaddress.ip_address(group).is_multicast:
                raise ValueError
        except ValueError:
            raise UsageError(f"invalid IPv{6 if ':' in group else 4} mcast-group `{group}'") from None
    role = args.start_daemon or args.stop_daemon
    return SyncDaemon(role=role, interface=args.mcast_interface or DEFAULT_MCAST_INTERFACE,
                      syncid=args.syncid or 0, maxlen=args.sync_maxlen or 0, mcast_group=group,
                      port=args.mcast_port or 0, ttl=args.mcast_ttl or 0)


async def sync_command(args: argparse.Namespace, target: Target) -> int:
    from saru.dataplane.ipvs import sync as ipvs_sync

    if args.start_daemon and args.stop_daemon:
        raise UsageError("give only one of --start-daemon, --stop-daemon")
    if args.start_daemon or args.stop_daemon:
        daemon = sync_daemon(args)
        plane = await target.ipvs()
        if args.start_daemon:
            await ipvs_sync.start_daemon(plane, daemon)
        else:
            await ipvs_sync.stop_daemon(plane, daemon.role, daemon.interface, daemon.syncid)
        return 0
    print(format_daemons(await ipvs_sync.read_daemons(await target.ipvs())), end="")
    return 0


def listing_mode(args: argparse.Namespace) -> str:
    for mode in ("stats", "rate", "thresholds", "persistent_conn"):
        if getattr(args, mode):
            return mode.replace("_", "-")
    return "plain"


async def execute(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    async with Target(args) as target:
        listing = args.cmd_L or args.cmd_L2
        if args.start_daemon or args.stop_daemon or (args.daemon and listing):
            return await sync_command(args, target)
        if listing or not any(getattr(args, f"cmd_{c}") for c in "AEDCRSaedZ"):
            if args.connection:
                if args.stats or args.rate or args.thresholds:
                    raise UsageError("options conflicts in the list command")
                print(format_connections(await target.connections(), args.persistent_conn), end="")
                return 0
            table = await target.table()
            only = service_key(args)
            if only is not None and only not in table.services:
                raise OperationError("No such service")
            print(format_listing(table, await target.stats(), listing_mode(args), args.exact, only), end="")
            return 0
        if args.cmd_S:
            print(format_rules(await target.table()), end="")
            return 0
        if args.cmd_Z:
            await target.zero(service_key(args))
            return 0
        table = await target.table()
        if args.cmd_R:
            ops = restore_ops(sys.stdin.read().splitlines(), table, parser)
        else:
            ops = edit_ops(args, table)
        await target.apply(ops)
        return 0


def run(args: argparse.Namespace) -> int:
    parser = argparse.ArgumentParser(prog="ipvsadm", add_help=False, exit_on_error=False)
    build_arguments(parser)
    try:
        return asyncio.run(execute(args, parser))
    except UsageError as exc:
        print(f"saru ipvsadm: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OperationError, DataplaneError) as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILED
