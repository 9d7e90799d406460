"""``saru-ldirectord``: a drop-in for the ``ldirectord`` command (its verbs, files, exit codes and texts).

``saru-ldirectord [-d|--debug] [--] [configfile] start|stop|restart|try-restart|reload|force-reload|status``
and ``saru-ldirectord -h|-?|--help|-v|--version``, like ldirectord 1.186-ha:

* config lookup ``/etc/ha.d/<arg>``, ``/etc/ha.d/conf/<arg>``, then ``<arg>`` as a path; without an
  argument the config is ``ldirectord.cf`` and the instance name ``ldirectord``, otherwise the instance
  name is the argument's basename (``.cf`` included);
* pid file ``/var/run/ldirectord.<instance>.pid``; an instance is running when that file names a live
  process whose command line mentions ``ldirectord`` (or ``saru``);
* ``status``: exit 0 + "ldirectord for X is running with pid: N" (stderr); exit 3 + "ldirectord is
  stopped for X" (stdout); a pid file naming no such process: exit 1 + "ldirectord stale pid file
  P for X" (stderr) and the stopped line — the text Pacemaker's ``ocf:heartbeat:ldirectord`` looks for;
* ``start`` when running, ``stop``/``try-restart`` when stopped: exit 0; ``reload`` when stopped: exit 1;
  configuration errors: exit 2; bad options or commands: usage, exit 255; missing config file: exit 1.

Better than the original (see docs/ocf.md): ``start`` returns once the table is programmed (start-up
errors reach the caller's stderr and exit status); ``stop`` returns once the table is cleaned and the
process is gone (or fails after ``SARU_LDIRECTORD_STOP_TIMEOUT`` seconds, default 30; a start not
ready after ``SARU_LDIRECTORD_START_TIMEOUT``, default 120, is stopped and fails; a daemon whose table
cannot be programmed — a port in use, a rule the kernel refuses — gives up after
``SARU_LDIRECTORD_TABLE_TIMEOUT`` seconds of retrying, default 30, and start fails with its reason); ``reload``
reports the new file's errors (exit 2, the running configuration stays); ``status`` also asks the
daemon over its control socket, so a hung daemon reads as an error rather than "running"; ``status``
and ``stop`` work even when the config file is missing or broken. ``-d`` runs in the foreground,
debug log on stderr, no pid file (as the original). Started as root, the daemon drops to its user
keeping three capabilities, exactly as ``saru run`` does (``saru.daemon.privileges.prepare_daemon``);
``SARU_DROP_PRIVILEGES=0`` keeps root.

Environment: ``SARU_DATAPLANE`` (auto|ipvs|nft|proxy; default: ``[director] dataplane`` of
``SARU_SETTINGS`` if set, else auto), ``SARU_SETTINGS`` (a saru.toml, given to the daemon), ``SARU_LDIRECTORD_PIDDIR``
(default ``/var/run``), ``SARU_LDIRECTORD_START_TIMEOUT``, ``_TABLE_TIMEOUT`` (0: retry until the start
timeout), ``_STOP_TIMEOUT``, ``_STATUS_TIMEOUT`` (seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, cast

from saru import __version__
from saru.model import DATAPLANES

#: the verbs and what each does: the help text and saru-ldirectord(8) are made from this table
VERBS = (
    ("start", "start the daemon; returns once the table is programmed"),
    ("stop", "stop the daemon (SIGTERM); returns once the table is cleaned and the process gone"),
    ("restart", "stop it if it runs, then start it"),
    ("try-restart", "restart it only if it runs"),
    ("reload", "make it re-read the config; a config with errors is refused (exit 2) and the running one "
               "kept"),
    ("force-reload", "the same as reload"),
    ("status", "exit 0 running, 3 stopped, 1 stale pid file or not answering"),
)
COMMANDS = tuple(verb for verb, _ in VERBS)
#: the options (spellings, meaning), as ldirectord's help lists them
OPTIONS = (
    ("configfile", "/etc/ha.d/<configfile>, /etc/ha.d/conf/<configfile> or a path (default ldirectord.cf)."),
    ("-d|--debug", "Don't start as daemon and log verbosely (to stderr, no pid file)."),
    ("-h|-?|--help", "Print this help and exit."),
    ("-v|--version", "Print version and exit."),
)
#: the environment variables saru-ldirectord reads
ENVIRONMENT = (
    ("SARU_DATAPLANE", "auto | ipvs | nft | proxy (default: SARU_SETTINGS' [director] dataplane, else auto)"),
    ("SARU_SETTINGS", "a saru.toml with [director] settings, given to the daemon"),
    ("SARU_LDIRECTORD_PIDDIR", "directory of ldirectord.<name>.pid (default /var/run)"),
    ("SARU_DROP_PRIVILEGES", "0: started as root, the daemon stays root (default: it becomes SARU_SETTINGS' "
                             "[director] user, else saru, else nobody, keeping CAP_NET_ADMIN, CAP_NET_RAW, "
                             "CAP_NET_BIND_SERVICE, as saru run does)"),
    ("SARU_LDIRECTORD_START_TIMEOUT", "seconds start waits for the table (default 120)"),
    ("SARU_LDIRECTORD_TABLE_TIMEOUT", "seconds a starting daemon retries a table it cannot program (port in "
                                      "use…) before start fails (default 30; 0: retry until the start timeout)"),
    ("SARU_LDIRECTORD_STATUS_TIMEOUT", "seconds status waits for the daemon's answer (default 5)"),
    ("SARU_LDIRECTORD_STOP_TIMEOUT", "seconds stop waits for the daemon to exit (default 30)"),
)
EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_STOPPED, EXIT_USAGE = 0, 1, 2, 3, 255
#: exit statuses and their meaning (saru-ldirectord(8))
EXIT_STATUSES = (
    (EXIT_OK, "success; status: running"),
    (EXIT_ERROR, "failure; status: a stale pid file or a daemon that does not answer; reload: not running; "
                 "the config file is missing"),
    (EXIT_CONFIG, "configuration errors (nothing was started or changed)"),
    (EXIT_STOPPED, "status: stopped"),
    (EXIT_USAGE, "bad options or command"),
)
DEFAULT_PIDDIR = "/var/run"
DEFAULT_STOP_TIMEOUT = 30.0
DEFAULT_START_TIMEOUT = 120.0
STATUS_TIMEOUT = 5.0  # a daemon that does not answer its control socket within this is hung
POLL = 0.05

USAGE = """\
Usage:
    saru-ldirectord [-d|--debug] [--] [configfile] start | stop | restart |
    try-restart | reload | force-reload | status

    saru-ldirectord [-h|-?|--help|-v|--version]
"""


def _help_text() -> str:
    def item(term: str, text: str, width: int) -> str:
        return textwrap.fill(text, 96, initial_indent=f"    {term:<{width}} ",
                             subsequent_indent=" " * (width + 5), break_on_hyphens=False)

    return "\n".join([
        USAGE, "Options:", *(item(term, text, 12) for term, text in OPTIONS), "",
        "Commands:", *(item(verb, text, 12) for verb, text in VERBS), "",
        "Environment:", *(item(name, text, 30) for name, text in ENVIRONMENT), ""])


HELP = _help_text()

VERSION_TEXT = f"""\
saru-ldirectord (saru {__version__}), compatible with Linux Director v1.186-ha
Saru comes with ABSOLUTELY NO WARRANTY.
"""


@dataclass(frozen=True)
class Invocation:
    """A parsed command line."""

    command: str
    config_arg: str | None
    debug: bool = False


class UsageError(Exception):
    """Bad options or arguments; the message (possibly empty) precedes the usage text."""


def parse_argv(argv: Sequence[str]) -> Invocation | str:
    """Getopt::Long with ``bundling, no_auto_abbrev, require_order`` as ldirectord configures it.

    Returns an Invocation, or ``"help"``/``"version"``; raises UsageError."""
    args = list(argv)
    debug = help_ = version = False
    while args:
        arg = args[0]
        if arg == "--":
            args.pop(0)
            break
        if arg.startswith("--"):
            name = arg[2:]
            if name == "debug":
                debug = True
            elif name == "help":
                help_ = True
            elif name == "version":
                version = True
            else:
                raise UsageError(f"Unknown option: {name}")
            args.pop(0)
            continue
        if arg.startswith("-") and len(arg) > 1:
            for letter in arg[1:]:
                if letter == "d":
                    debug = True
                elif letter in "h?":
                    help_ = True
                elif letter == "v":
                    version = True
                else:
                    raise UsageError(f"Unknown option: {letter}")
            args.pop(0)
            continue
        break
    if help_:
        return "help"
    if version:
        return "version"
    if not args or len(args) > 2 or args[-1] not in COMMANDS:
        raise UsageError("")
    return Invocation(command=args[-1], config_arg=args[0] if len(args) == 2 else None, debug=debug)


def find_config(arg: str | None) -> str:
    """ldirectord's lookup: /etc/ha.d/<arg>, /etc/ha.d/conf/<arg>, then <arg> itself (as given)."""
    name = arg or "ldirectord.cf"
    for candidate in (f"/etc/ha.d/{name}", f"/etc/ha.d/conf/{name}"):
        if os.path.isfile(candidate):
            return candidate
    return name


def instance_name(arg: str | None) -> str:
    """``CFGNAME``: the config argument's basename (``.cf`` included), or ``ldirectord``."""
    if arg is None:
        return "ldirectord"
    return arg.rstrip("/").rsplit("/", 1)[-1] or arg


def pidfile_path(cfgname: str) -> Path:
    return Path(os.environ.get("SARU_LDIRECTORD_PIDDIR") or DEFAULT_PIDDIR) / f"ldirectord.{cfgname}.pid"


def read_pidfile(path: Path) -> int | None:
    """The pid in the file, or None when there is no (readable, numeric) pid file."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_director(pid: int) -> bool:
    """ldirectord's liveness rule: /proc/<pid>/cmdline mentions ldirectord (or saru), not a zombie."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    return state not in ("Z", "X") and (b"ldirectord" in cmdline or b"saru" in cmdline)


def choose_dataplane(environ: Mapping[str, str]) -> str:
    """``SARU_DATAPLANE``, else ``SARU_SETTINGS``' ``[director] dataplane``, else ``auto``.

    Raises ValueError with a readable message."""
    name = environ.get("SARU_DATAPLANE", "").strip()
    if name:
        if name not in DATAPLANES:
            raise ValueError(f"SARU_DATAPLANE={name!r} is not one of {', '.join(DATAPLANES)}")
        return name
    settings = environ.get("SARU_SETTINGS", "").strip()
    if settings:
        from saru.config.diagnostics import ConfigError
        from saru.config.native import load_settings

        try:
            return load_settings(settings).director.dataplane
        except ConfigError as exc:
            raise ValueError(f"SARU_SETTINGS={settings}:\n{exc}") from exc
        except OSError as exc:
            raise ValueError(f"SARU_SETTINGS={settings}: {exc.strerror}") from exc
    return "auto"


def _env_table_timeout() -> float:
    """``SARU_LDIRECTORD_TABLE_TIMEOUT``: the daemon's start timeout (0 allowed: keep retrying)."""
    from saru.daemon import DEFAULT_START_TIMEOUT

    try:
        value = float(os.environ.get("SARU_LDIRECTORD_TABLE_TIMEOUT") or DEFAULT_START_TIMEOUT)
    except ValueError:
        return DEFAULT_START_TIMEOUT
    return value if 0 <= value < float("inf") else DEFAULT_START_TIMEOUT


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        return default
    return value if value > 0 else default


def err(message: str) -> None:
    print(message, file=sys.stderr)


class Instance:
    """One ldirectord instance: its config, pid file and control socket."""

    def __init__(self, config_arg: str | None) -> None:
        self.config = find_config(config_arg)  # as ldirectord names it in messages
        self.config_abs = os.path.abspath(self.config)
        self.cfgname = instance_name(config_arg)
        self.pidfile = pidfile_path(self.cfgname)

    @property
    def socket(self) -> Path:
        from saru.control import default_socket_path

        return default_socket_path(self.config_abs)

    def pids(self) -> tuple[int | None, int | None]:
        """(pid in the pid file, that pid if it is a live director)."""
        filepid = read_pidfile(self.pidfile)
        return filepid, (filepid if filepid is not None and is_director(filepid) else None)

    def running(self) -> int | None:
        return self.pids()[1]

    def exists(self) -> bool:
        return os.path.isfile(self.config)

    def parse(self) -> bool:
        """Parse the config as every starting ldirectord does; print errors, return False on errors."""
        from saru.config.diagnostics import ConfigError
        from saru.config.ldirectord import parse_file

        try:
            parse_file(self.config_abs)
        except ConfigError as exc:
            err(str(exc))
            return False
        return True

    def supervised(self) -> bool:
        from saru.config.ldirectord import parse_file

        return bool(parse_file(self.config_abs).globals.supervised)

    def ask_status(self) -> tuple[dict[str, object] | None, str]:
        """The daemon's status answer over the control socket, or (None, why not)."""
        from saru.control import request

        try:
            answer = asyncio.run(request(self.socket, "status",
                                         timeout=_env_seconds("SARU_LDIRECTORD_STATUS_TIMEOUT", STATUS_TIMEOUT)))
        except (OSError, ConnectionError, TimeoutError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            return None, reason
        return answer, ""


# ---------------------------------------------------------------------------------------- commands


def cmd_status(inst: Instance) -> int:
    filepid, pid = inst.pids()
    if pid is None:
        if filepid is not None:
            err(f"ldirectord stale pid file {inst.pidfile} for {inst.config}")
            print(f"ldirectord is stopped for {inst.config}")
            return EXIT_ERROR
        print(f"ldirectord is stopped for {inst.config}")
        return EXIT_STOPPED
    problem = _control_problem(inst, pid)
    if problem:
        err(f"ldirectord for {inst.config} is running with pid: {pid}, but {problem}")
        return EXIT_ERROR
    err(f"ldirectord for {inst.config} is running with pid: {pid}")
    return EXIT_OK


def _control_problem(inst: Instance, pid: int) -> str:
    """Why the daemon with ``pid`` does not look healthy on its control socket ('' if it does).

    No socket file (a daemon closing down, a foreign caller's runtime dir) or no permission to use
    it: the pid file's verdict stands, as in ldirectord."""
    socket = inst.socket
    if not socket.exists():
        return ""
    answer, reason = inst.ask_status()
    if answer is None:
        if "ermission" in reason:
            return ""
        return f"does not answer on {socket}: {reason}"
    served_by = answer.get("pid")
    if isinstance(served_by, int) and served_by != pid:
        return f"its control socket {socket} is served by pid {served_by}"
    return ""


def cmd_start(inst: Instance, debug: bool) -> int:
    if inst.running() is not None:
        return EXIT_OK
    if not inst.parse():
        return EXIT_CONFIG
    try:
        dataplane = choose_dataplane(os.environ)
    except ValueError as exc:
        err(f"saru-ldirectord: {exc}")
        return EXIT_CONFIG
    if debug or inst.supervised():
        console = sys.stderr if debug else None
        return _run_daemon(inst, dataplane, None, console, debug, None)
    with contextlib.suppress(FileNotFoundError):
        inst.pidfile.unlink()  # stale (checked above): ldirectord overwrites it too
    return _start_detached(inst, dataplane)


def _start_detached(inst: Instance, dataplane: str) -> int:
    from saru.daemon.daemonize import Channel, run_detached

    def body(channel: Channel) -> int:
        log = StartupLog(channel.log)

        def on_ready() -> None:
            log.discard()
            channel.ready()

        return _run_daemon(inst, dataplane, str(inst.pidfile), cast(TextIO, log), False, on_ready)

    return run_detached(body, prog="saru-ldirectord", timeout=_env_seconds("SARU_LDIRECTORD_START_TIMEOUT",
                                                                           DEFAULT_START_TIMEOUT),
                        stop_grace=_env_seconds("SARU_LDIRECTORD_STOP_TIMEOUT", DEFAULT_STOP_TIMEOUT))


def _run_daemon(inst: Instance, dataplane: str, pidfile: str | None, console: TextIO | None, debug: bool,
                on_ready: Callable[[], None] | None) -> int:
    from saru.daemon import Daemon, DaemonOptions
    from saru.daemon.privileges import PrivilegeError, prepare_daemon

    settings = os.environ.get("SARU_SETTINGS", "").strip() or None
    try:  # the same drop as saru run's (started as root: become [director] user, keep three capabilities)
        notes = prepare_daemon(inst.config_abs, os.path.abspath(settings) if settings else None, pidfile=pidfile)
    except (PrivilegeError, KeyError) as exc:
        err(f"saru-ldirectord: cannot drop privileges: {exc} (SARU_DROP_PRIVILEGES=0 or [director] "
            "drop_privileges = false in SARU_SETTINGS keeps root)")
        return EXIT_ERROR
    for note in notes:
        err(f"saru: {note}")
    options = DaemonOptions(config_path=inst.config_abs, dataplane=dataplane, pidfile=pidfile,
                            console=console, debug=debug, on_ready=on_ready,
                            settings_path=os.path.abspath(settings) if settings else None,
                            start_timeout=_env_table_timeout(),
                            start_timeout_hint="SARU_LDIRECTORD_TABLE_TIMEOUT=0 keeps retrying")
    return asyncio.run(Daemon(options).run())


class StartupLog(io.TextIOBase):
    """The daemon's console while starting detached: each line goes to the caller (shown there only
    if the start fails); once the daemon is ready, everything is discarded."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        super().__init__()
        self.sink = sink
        self.discarded = False

    def write(self, text: str) -> int:
        if not self.discarded:
            for line in text.splitlines():
                if line.strip():
                    self.sink(line)
        return len(text)

    def discard(self) -> None:
        self.discarded = True


def stop_daemon(inst: Instance, pid: int) -> bool:
    """SIGTERM, then wait (bounded) until the process is gone; tidy a pid file it left behind."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    timeout = _env_seconds("SARU_LDIRECTORD_STOP_TIMEOUT", DEFAULT_STOP_TIMEOUT)
    deadline = time.monotonic() + timeout
    while is_director(pid):
        if time.monotonic() >= deadline:
            err(f"saru-ldirectord: pid {pid} ({inst.config}) did not exit within {timeout:g}s of SIGTERM")
            return False
        time.sleep(POLL)
    if read_pidfile(inst.pidfile) == pid:
        with contextlib.suppress(OSError):
            inst.pidfile.unlink()
    return True


def cmd_stop(inst: Instance) -> int:
    pid = inst.running()
    if pid is None:
        return EXIT_OK
    return EXIT_OK if stop_daemon(inst, pid) else EXIT_ERROR


def cmd_restart(inst: Instance, debug: bool, only_if_running: bool) -> int:
    pid = inst.running()
    if pid is None and only_if_running:
        return EXIT_OK
    if pid is not None:
        if not inst.parse():  # ldirectord parses before acting: a broken file leaves it running
            return EXIT_CONFIG
        if not stop_daemon(inst, pid):
            return EXIT_ERROR
    return cmd_start(inst, debug)


def cmd_reload(inst: Instance) -> int:
    pid = inst.running()
    if pid is None:
        err(f"ldirectord is stopped for {inst.config}")
        return EXIT_ERROR
    if not inst.parse():
        return EXIT_CONFIG
    from saru.control import request

    socket = inst.socket
    try:
        answer = asyncio.run(request(socket, "reload"))
    except (OSError, ConnectionError, TimeoutError, ValueError):
        answer = None
    if answer is None or not answer.get("ok"):
        try:  # no control socket to talk to: ldirectord's way, SIGHUP
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            err(f"saru-ldirectord: cannot signal pid {pid}: {exc.strerror}")
            return EXIT_ERROR
        return EXIT_OK
    if not answer.get("reloaded"):
        err(f"saru-ldirectord: {inst.config} has errors; the running configuration is kept:")
        for line in cast(list[str], answer.get("errors") or []):
            err(f"  {line}")
        return EXIT_CONFIG
    for line in cast(list[str], answer.get("warnings") or []):
        err(line)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    from saru.cli.main import quiet_on_broken_pipe

    return quiet_on_broken_pipe(lambda: _main(argv))  # output into a closed pipe: exit 141 quietly


def _main(argv: Sequence[str] | None) -> int:
    try:
        parsed = parse_argv(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        if str(exc):
            err(str(exc))
        sys.stdout.write(USAGE)
        return EXIT_USAGE
    if parsed == "help":
        sys.stdout.write(HELP)
        return EXIT_OK
    if parsed == "version":
        sys.stdout.write(VERSION_TEXT)
        return EXIT_OK
    assert isinstance(parsed, Invocation)
    inst = Instance(parsed.config_arg)
    command = parsed.command
    if not inst.exists() and command not in ("status", "stop"):
        err(f"Config file {inst.config} not found")
        return EXIT_ERROR
    if command == "status":
        return cmd_status(inst)
    if command == "start":
        return cmd_start(inst, parsed.debug)
    if command == "stop":
        return cmd_stop(inst)
    if command in ("restart", "try-restart"):
        return cmd_restart(inst, parsed.debug, only_if_running=command == "try-restart")
    return cmd_reload(inst)


if __name__ == "__main__":
    sys.exit(main())
