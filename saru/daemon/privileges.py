"""Least privilege: which user the daemon and its commands are, and the drop from root to that user.

Two users, both from saru.toml ``[director]``:

* ``command_user``: who external checks, ``callback``, ``fallbackcommand``, ``[ha]`` notify scripts and
  sendmail run as (``saru.subproc``). ``user``: who a daemon started as root by hand becomes.
* Not written: ``$SARU_COMMAND_USER`` for ``command_user`` when set (the test suite's root daemons:
  ``root``), else ``saru``, else ``nobody`` (with a warning) on a host without a ``saru`` user. Root
  only when written as ``"root"``. A written name the host does not know is refused by the reader.
* ``SARU_DROP_PRIVILEGES=0`` in the environment is ``saru run --no-drop``.

``drop_to(user)`` (``saru run`` as root, before the event loop and any thread start: capabilities
are per thread and a new thread inherits its creator's) keeps exactly ``KEEP``: PR_SET_KEEPCAPS, the
bounding set cut to ``KEEP``, setgroups/setgid/setuid, then ``capset`` (effective, permitted and
inheritable = ``KEEP``) and ``KEEP`` raised as ambient so the programs the daemon runs itself (``nft``,
``ip``, ``ipvsadm``) have them too. Commands run as another user lose them at the exec (a change of
uid away from 0 clears the ambient set).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from saru.subproc import RunAs

DEFAULT_USER = "saru"
FALLBACK_USER = "nobody"

# capability bit numbers (linux/capability.h)
CAP_NET_BIND_SERVICE = 10  # the proxy listening on a port below 1024
CAP_NET_ADMIN = 12  # IPVS, nftables, the VIP, routes, conntrack
CAP_NET_RAW = 13  # VRRP, ARP/NA, ICMP (ping, VIPcheck)
#: what the daemon keeps after the drop
KEEP = (CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE)

# prctl(2) options
PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


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


def mask(caps: tuple[int, ...]) -> int:
    """The capability set with these bits."""
    value = 0
    for cap in caps:
        value |= 1 << cap
    return value


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _prctl(libc: ctypes.CDLL, *args: int) -> None:
    if libc.prctl(*(ctypes.c_ulong(a) for a in args), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        errno = ctypes.get_errno()
        raise PrivilegeError(f"prctl{args}: {os.strerror(errno)}")


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _capset(libc: ctypes.CDLL, caps: int) -> None:
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for index in range(2):
        word = (caps >> (32 * index)) & 0xFFFFFFFF
        data[index].effective = data[index].permitted = data[index].inheritable = word
    if libc.capset(ctypes.byref(header), data) != 0:
        raise PrivilegeError(f"capset: {os.strerror(ctypes.get_errno())}")


def last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 40


def drop_to(user: RunAs, keep: tuple[int, ...] = KEEP) -> None:
    """Become ``user`` keeping only ``keep`` (effective, permitted, inheritable, bounding, ambient).
    Call as root, before any thread starts. ``PrivilegeError`` if a step fails."""
    libc = _libc()
    for cap in range(last_cap() + 1):
        if cap not in keep:
            _prctl(libc, PR_CAPBSET_DROP, cap)
    _prctl(libc, PR_SET_KEEPCAPS, 1)
    try:
        os.setgroups(list(user.groups))
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except OSError as exc:
        raise PrivilegeError(f"cannot become {user.name}: {exc.strerror}") from None
    _prctl(libc, PR_SET_KEEPCAPS, 0)
    _capset(libc, mask(keep))
    for cap in keep:
        _prctl(libc, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)
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


def hand_over(path: Path, user: RunAs, *, directory: bool) -> None:
    """Make ``path`` (created when a missing directory) the user's, before the drop, so the daemon can
    still write it afterwards: the runtime dir (control socket, pid file, locks), the state dir, the
    log file."""
    if directory:
        path.mkdir(parents=True, exist_ok=True, mode=0o755)
    if path.exists():
        os.chown(path, user.uid, user.gid)


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
        if paths.logfile is not None:
            log = Path(paths.logfile)
            if not log.exists() and log.parent.is_dir():
                log.touch(mode=0o640)
            hand_over(log, user, directory=False)
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
    """What the daemon writes after the drop: runtime dir, state dir, the log file (None: syslog/none)."""

    runtime: Path
    state: Path
    logfile: str | None
