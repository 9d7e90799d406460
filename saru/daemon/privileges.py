"""Least privilege: which user the daemon and its commands are, and the drop from root to that user.

Two users, both from saru.toml ``[director]``:

* ``command_user``: who external checks, ``callback``, ``fallbackcommand``, ``[ha]`` notify scripts and
  sendmail run as (``saru.subproc``). ``user``: who a daemon started as root by hand becomes.
* Not written: ``$SARU_COMMAND_USER`` for ``command_user`` when set (the test suite's root daemons:
  ``root``), else ``saru``, else ``nobody`` (with a warning) on a host without a ``saru`` user. Root
  only when written as ``"root"``. A written name the host does not know is refused by the reader.
* ``SARU_DROP_PRIVILEGES=0`` in the environment is ``saru run --no-drop``.

``drop_to(user)`` (``saru run`` and ``saru-ldirectord start`` as root, before the event loop and any
thread start: capabilities are per thread and a new thread inherits its creator's) keeps exactly
``KEEP``: PR_SET_KEEPCAPS, the bounding set cut to ``KEEP``, setgroups/setgid/setuid, then ``capset``
(effective and permitted = ``KEEP``, inheritable and ambient empty). The programs the daemon starts get
no capability (``saru.caps``: the same state ``keep_for_self_only`` gives a daemon started by systemd
with ``AmbientCapabilities=``); the one that needs one, the ``nft`` command, gets CAP_NET_ADMIN for its
own exec (``saru.caps.raised_for_exec``). ``prepare_daemon`` is the one entry point both commands call.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from saru.caps import (
    CAP_NET_ADMIN,
    CAP_NET_BIND_SERVICE,
    CAP_NET_RAW,
    PR_CAPBSET_DROP,
    PR_SET_KEEPCAPS,
    CapError,
    CapSets,
    capset,
    keep_for_self_only,
    mask,
    prctl,
)
from saru.files import UnsafeFile, open_append
from saru.subproc import RunAs

DEFAULT_USER = "saru"
FALLBACK_USER = "nobody"

#: what the daemon keeps after the drop
KEEP = (CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE)
__all__ = ["KEEP", "DaemonPaths", "PrivilegeError", "Resolved", "drop_for_daemon", "drop_to", "mask",
           "prepare_daemon", "pwd_name", "resolve"]


class PrivilegeError(Exception):
    """The drop failed (``str()`` says which step); the daemon must not go on half-dropped."""


@dataclass(frozen=True)
class Resolved:
    """A user resolved from a setting, and the warning to log when it was a fallback."""

    run_as: RunAs
    warning: str | None = None


def resolve(name: str | None, key: str) -> Resolved:
    """The user for a ``[director] key`` setting (``name`` None: not written): see the module docstring.
    ``KeyError`` when a written name is unknown (the reader refuses it first) or neither default exists."""
    if name is not None:
        return Resolved(RunAs.lookup(name))
    from_env = os.environ.get("SARU_COMMAND_USER") if key == "command_user" else None
    if from_env:
        return Resolved(RunAs.lookup(from_env))
    try:
        return Resolved(RunAs.lookup(DEFAULT_USER))
    except KeyError:
        return Resolved(RunAs.lookup(FALLBACK_USER),
                        f"[director] {key}: no user {DEFAULT_USER!r} on this host; using {FALLBACK_USER!r} "
                        f"(create the system user {DEFAULT_USER!r}, or name one in saru.toml)")


def pwd_name(uid: int) -> str:
    """The name of user ``uid`` (its number when it has none)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 40


def drop_to(user: RunAs, keep: tuple[int, ...] = KEEP) -> None:
    """Become ``user`` keeping only ``keep`` (effective, permitted, bounding; nothing inheritable/ambient).
    Call as root, before any thread starts. ``PrivilegeError`` if a step fails."""
    try:
        for cap in range(last_cap() + 1):
            if cap not in keep:
                prctl(PR_CAPBSET_DROP, cap)
        prctl(PR_SET_KEEPCAPS, 1)
    except CapError as exc:
        raise PrivilegeError(str(exc)) from None
    try:
        os.setgroups(list(user.groups))
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except OSError as exc:
        raise PrivilegeError(f"cannot become {user.name}: {exc.strerror}") from None
    try:
        prctl(PR_SET_KEEPCAPS, 0)
        capset(CapSets(mask(keep), mask(keep), 0))  # inheritable (and so ambient) empty: see the docstring
    except CapError as exc:
        raise PrivilegeError(str(exc)) from None
    os.environ.update(HOME=user.home, USER=user.name, LOGNAME=user.name)


def code_paths() -> list[str]:
    """What the daemon still imports from after the drop: Python's library and Saru's package."""
    import saru

    return [os.path.dirname(os.__file__), os.path.dirname(saru.__file__)]


def unreadable_by(user: RunAs, paths: list[str]) -> list[str]:
    """Those of ``paths`` ``user`` cannot read (checked in a child process that becomes the user)."""
    unreadable = []
    for path in paths:
        pid = os.fork()
        if pid == 0:  # the child: become the user, try, report by exit status
            try:
                os.setgroups(list(user.groups))
                os.setgid(user.gid)
                os.setuid(user.uid)
                os._exit(0 if os.access(path, os.R_OK | os.X_OK) else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            unreadable.append(path)
    return unreadable


def hand_over(path: Path, user: RunAs, *, directory: bool, mode: int = 0o640) -> None:
    """Make ``path`` the user's, before the drop, so the daemon can still write it afterwards: the
    runtime dir (control socket, pid file, locks), the state dir (created when missing, 0755), the log
    file and saru-ldirectord's pid file (created when missing, ``mode``). Never through a symbolic link
    planted at the name (``saru.files``): root would hand whatever it points at to the user."""
    if directory:
        path.mkdir(parents=True, exist_ok=True, mode=0o755)
        if path.is_symlink() or not path.is_dir():
            raise UnsafeFile(path, "is a symbolic link or not a directory; refused")
        os.chown(path, user.uid, user.gid, follow_symlinks=False)
        return
    if not path.parent.is_dir():
        return  # the daemon reports a log file it cannot open
    fd = open_append(path, mode)
    try:
        os.fchown(fd, user.uid, user.gid)
    finally:
        os.close(fd)


def drop_for_daemon(user_setting: str | None, command_user: str | None, paths: DaemonPaths) -> list[str]:
    """``saru run`` as root: hand over ``paths`` to the daemon's user and drop to it (see the module
    docstring); returns lines to log. Stays root (saying so) when ``command_user`` is ``root``: root
    commands need a root daemon. ``PrivilegeError`` / ``KeyError`` when it cannot."""
    if command_user == "root":
        return ["[director] command_user = \"root\": the daemon stays root (drop_privileges does not apply)"]
    resolved = resolve(user_setting, "user")
    user = resolved.run_as
    notes = [resolved.warning] if resolved.warning else []
    if user.uid == 0:
        return [*notes, "[director] user is root: the daemon stays root"]
    # root's default places stay the daemon's after the drop (runtime_dir()/state_dir() look at the uid)
    os.environ.setdefault("SARU_RUNTIME_DIR", str(paths.runtime))
    os.environ.setdefault("SARU_STATE_DIR", str(paths.state))
    try:
        hand_over(paths.runtime, user, directory=True)
        hand_over(paths.state, user, directory=True)
        hand_over(paths.state / "operator", user, directory=True)
        for name, mode in ((paths.logfile, 0o640), (paths.pidfile, 0o644)):
            if name is not None:
                hand_over(Path(name), user, directory=False, mode=mode)
    except UnsafeFile as exc:
        raise PrivilegeError(f"cannot prepare {exc} for user {user.name}") from None
    except OSError as exc:
        raise PrivilegeError(f"cannot prepare {exc.filename} for user {user.name}: {exc.strerror}") from None
    unreadable = unreadable_by(user, code_paths())
    if unreadable:
        raise PrivilegeError(f"user {user.name} cannot read {', '.join(unreadable)} (this Python or Saru "
                             "itself; it imports modules later): install Saru where that user can read it")
    drop_to(user)
    return [*notes, f"Dropped privileges to {user.name} (uid {user.uid}), keeping CAP_NET_ADMIN, CAP_NET_RAW, "
                    "CAP_NET_BIND_SERVICE"]


@dataclass(frozen=True)
class DaemonPaths:
    """What the daemon writes after the drop: runtime dir, state dir, the log file (None: syslog/none),
    a pid file outside the runtime dir (``saru-ldirectord``'s ``/var/run/ldirectord.NAME.pid``: made
    the user's, empty, so the daemon can write it; on its way out it empties it, the directory being
    root's)."""

    runtime: Path
    state: Path
    logfile: str | None
    pidfile: str | None = None


def prepare_daemon(config_path: str, settings_path: str | None, *, drop: bool = True,
                   pidfile: str | None = None) -> list[str]:
    """What every daemon command (``saru run``, ``saru-ldirectord start``) does before its event loop
    and any thread: started as root with ``drop`` (and neither ``[director] drop_privileges = false`` nor
    ``SARU_DROP_PRIVILEGES=0``), become the daemon's user (``drop_for_daemon``); not root but holding
    capabilities (systemd's ``AmbientCapabilities=``), keep them for this process only
    (``saru.caps.keep_for_self_only``). Returns lines to log; ``PrivilegeError`` / ``KeyError`` when the
    drop cannot be done (nothing was started). A file with errors is left to the daemon to report."""
    from saru.config.diagnostics import ConfigError
    from saru.config.ldirectord import parse_file
    from saru.config.native import load_settings
    from saru.control.paths import runtime_dir
    from saru.daemon.operator import state_dir
    from saru.model import Settings

    if os.geteuid() != 0:
        try:
            warning = keep_for_self_only()
        except CapError as exc:
            return [f"cannot empty the inheritable capabilities: {exc}"]
        return [warning] if warning else []
    if not drop or os.environ.get("SARU_DROP_PRIVILEGES") == "0":
        return []
    try:
        settings = load_settings(settings_path) if settings_path else Settings()
        logfile = parse_file(config_path).globals.logfile
    except ConfigError:
        return []  # the daemon reports the file's errors itself (exit status 2)
    director = settings.director
    if not director.drop_privileges:
        return []
    paths = DaemonPaths(runtime_dir(), state_dir(), logfile if logfile and logfile.startswith("/") else None,
                        os.path.abspath(pidfile) if pidfile else None)
    return drop_for_daemon(director.user, director.command_user, paths)
