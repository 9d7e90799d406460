"""Kernel parameters: the live value (``/proc/sys``) and what the sysctl.d files set at boot.

Keys are written the way sysctl.d(5) does: dots between components, or slashes when a component (an
interface name such as ``eth0.100``) contains a dot. ``normalize`` turns either form into the list of
components, so ``net.ipv4.conf.eth0.arp_ignore`` and ``net/ipv4/conf/eth0/arp_ignore`` compare equal.

``boot_values(files)`` is the pure half of "is it persistent?": given the sysctl configuration files
(path → text) it returns, per key, the value the last file applied at boot sets and which file that
is — systemd-sysctl's order (files sorted by name over /etc/sysctl.d, /run/sysctl.d,
/usr/local/lib/sysctl.d, /usr/lib/sysctl.d with /etc winning a same-named file; /etc/sysctl.conf last).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

PROC_SYS = Path("/proc/sys")
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d")
SYSCTL_CONF = "/etc/sysctl.conf"


def normalize(key: str) -> tuple[str, ...]:
    """The components of a key in either notation (``a.b.c`` or ``a/b/c``)."""
    key = key.strip()
    if "/" in key:
        return tuple(part for part in key.split("/") if part)
    return tuple(key.split("."))


def dotted(parts: Iterable[str]) -> str:
    """The sysctl.d spelling: dots, or slashes when a component contains a dot."""
    parts = tuple(parts)
    if any("." in part for part in parts):
        return "/".join(parts)
    return ".".join(parts)


def conf_key(interface: str, name: str, family: int = 4) -> str:
    """``net.ipv4.conf.<interface>.<name>`` in sysctl.d spelling."""
    return dotted(("net", f"ipv{family}", "conf", interface, name))


def proc_path(key: str, proc: Path = PROC_SYS) -> Path:
    return proc.joinpath(*normalize(key))


def read(key: str, proc: Path = PROC_SYS) -> str | None:
    """The live value, or None when the key does not exist (module not loaded, no such interface)."""
    try:
        return proc_path(key, proc).read_text().strip()
    except OSError:
        return None


def write(key: str, value: str, proc: Path = PROC_SYS) -> None:
    """Set a live value; OSError when the key does not exist or we may not write it."""
    with open(proc_path(key, proc), "w") as fh:
        fh.write(f"{value}\n")


def parse(text: str) -> dict[tuple[str, ...], str]:
    """``key = value`` lines of a sysctl.d file (comments ``#``/``;``, a leading ``-`` ignored)."""
    values: dict[tuple[str, ...], str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().lstrip("-").strip()
        if key:
            values[normalize(key)] = value.strip()
    return values


def render(values: Iterable[tuple[str, str]], header: str) -> str:
    """A sysctl.d file: a comment header, then one ``key = value`` line each."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"{key} = {value}" for key, value in values]
    return "\n".join(lines) + "\n"


def boot_order(paths: Iterable[str]) -> list[str]:
    """systemd-sysctl's order of application of the given configuration files (last one wins)."""
    by_name: dict[str, str] = {}
    rank = {d: i for i, d in enumerate(SYSCTL_DIRS)}
    conf = None
    for path in paths:
        if path == SYSCTL_CONF:
            conf = path
            continue
        directory, name = os.path.split(path)
        if directory not in rank or not name.endswith(".conf"):
            continue
        current = by_name.get(name)
        if current is None or rank[directory] < rank[os.path.dirname(current)]:
            by_name[name] = path
    ordered = [by_name[name] for name in sorted(by_name)]
    if conf is not None:  # procps' sysctl --system reads it last (Debian links it as 99-sysctl.conf too)
        ordered.append(conf)
    return ordered


def boot_values(files: Mapping[str, str]) -> dict[tuple[str, ...], tuple[str, str]]:
    """Per key: (value, file) that wins at boot, from {path: text} of every sysctl configuration file."""
    result: dict[tuple[str, ...], tuple[str, str]] = {}
    for path in boot_order(files):
        for key, value in parse(files[path]).items():
            result[key] = (value, path)
    return result


def read_config_files(root: Path) -> dict[str, str]:
    """Every sysctl configuration file under ``root`` (paths reported without the root prefix)."""
    files: dict[str, str] = {}
    for directory in SYSCTL_DIRS:
        base = root / directory.lstrip("/")
        try:
            names = sorted(os.listdir(base))
        except OSError:
            continue
        for name in names:
            if name.endswith(".conf"):
                try:
                    files[f"{directory}/{name}"] = (base / name).read_text(errors="replace")
                except OSError:
                    continue
    conf = root / SYSCTL_CONF.lstrip("/")
    if conf.is_file():
        files[SYSCTL_CONF] = conf.read_text(errors="replace")
    return files
