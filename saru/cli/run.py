"""``saru run``: the director daemon in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import sys

from saru.cli.common import target_of
from saru.daemon import DEFAULT_DRIFT_INTERVAL, DEFAULT_START_TIMEOUT, Daemon, DaemonOptions
from saru.dataplane.select import CHOICES


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the director in the foreground",
                       description="Run the director: health checks + data plane, in the foreground. "
                                   "SIGHUP or `saru reload` re-reads the config; SIGUSR1 reopens the log "
                                   "file; SIGTERM/Ctrl-C stops (removing the virtual services whose "
                                   "cleanstop is yes).")
    p.add_argument("-c", "--config", required=True, metavar="FILE",
                   help="ldirectord.cf to run, or a saru.toml whose [director] config names it")
    p.add_argument("--settings", metavar="SARU.TOML",
                   help="Saru's own settings (data plane, [ha] floating IP / VRRP, …)")
    p.add_argument("--dataplane", choices=CHOICES, default=None,
                   help="where the table lives (default: saru.toml's [director] dataplane, else auto)")
    p.add_argument("--control", metavar="PATH",
                   help="control socket path (default: named after the ldirectord.cf, which is how "
                        "status, reload, stop … with the same -c find it)")
    p.add_argument("--pidfile", metavar="PATH", help="write the daemon's pid here")
    p.add_argument("--rise", type=int, default=1, metavar="N",
                   help="successful checks needed before a down real comes back (default 1)")
    p.add_argument("--start-timeout", type=float, default=DEFAULT_START_TIMEOUT, metavar="SECONDS",
                   help="at start, exit with status 1 when the table could not be programmed (a port in "
                        "use, a rule the kernel refuses) for SECONDS of retrying (default "
                        f"{DEFAULT_START_TIMEOUT:g}); 0 keeps retrying. Once started, failures are "
                        "retried with back-off and shown by saru status, never fatal")
    p.add_argument("--drift-interval", type=float, default=DEFAULT_DRIFT_INTERVAL, metavar="SECONDS",
                   help="how often the kernel's table (and an HA master's VIP) is checked against what "
                        f"Saru applied, and repaired (default {DEFAULT_DRIFT_INTERVAL:g}; 0: only on status, "
                        "plan and reload)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="log only to the config's logfile, not to stderr")
    p.add_argument("-d", "--debug", action="store_true", help="debug logging")
    p.add_argument("--no-drop", action="store_true",
                   help="started as root, stay root (default: become saru.toml's [director] user, else "
                        "saru, else nobody, keeping only CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE)")
    p.add_argument("--handover", action="store_true",
                   help="graceful restart: take the listening sockets of the daemon running this config "
                        "(proxy data plane), stop it, and serve on them: no connection is refused meanwhile; "
                        "with no daemon running, start as usual")
    p.add_argument("--event-loop", choices=("asyncio", "uvloop"), default="asyncio",
                   help="event loop (uvloop must be installed: pip install 'saru[uvloop]')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.rise < 1:
        print("saru run: --rise must be at least 1", file=sys.stderr)
        return 2
    if not args.start_timeout >= 0 or args.start_timeout == float("inf"):
        print("saru run: --start-timeout must be a number of seconds, 0 or more", file=sys.stderr)
        return 2
    if not 0 <= args.drift_interval <= 86400:  # NaN fails too
        print("saru run: --drift-interval must be 0 (off) or a number of seconds up to 86400", file=sys.stderr)
        return 2
    target = target_of(args, "saru run", require_config=True)
    if target is None:
        return 2
    assert target.config is not None
    options = DaemonOptions(
        config_path=target.config,
        settings_path=target.settings_path,
        dataplane=args.dataplane or target.dataplane,
        control_path=str(target.control),
        pidfile=args.pidfile,
        console=None if args.quiet else sys.stderr,
        debug=args.debug,
        rise=args.rise,
        start_timeout=args.start_timeout,
        drift_interval=args.drift_interval,
        handover=args.handover,
    )
    status = _drop_privileges(target.config, target.settings_path, drop=not args.no_drop)
    if status:
        return status
    if args.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            print("saru run: uvloop is not installed (pip install 'saru[uvloop]')", file=sys.stderr)
            return 2
        return int(uvloop.run(Daemon(options).run()))
    return asyncio.run(Daemon(options).run())


def _drop_privileges(config_path: str, settings_path: str | None, drop: bool) -> int:
    """Before the event loop (and any thread): ``saru.daemon.privileges.prepare_daemon``; 0, or 1 when
    the drop cannot be done (nothing was started)."""
    from saru.daemon.privileges import PrivilegeError, prepare_daemon

    try:
        notes = prepare_daemon(config_path, settings_path, drop=drop)
    except (PrivilegeError, KeyError) as exc:
        print(f"saru run: cannot drop privileges: {exc} (--no-drop or [director] drop_privileges = false "
              "keeps root)", file=sys.stderr)
        return 1
    for note in notes:
        print(f"saru: {note}", file=sys.stderr)
    return 0
