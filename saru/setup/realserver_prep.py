"""Preparing a real server for LVS direct routing (the guide's real-server steps), as a plan of steps.

The guide's steps: the VIP on the loopback with a host mask (``lo:0``, 255.255.255.255), and the ARP
restrictions ``net.ipv4.conf.{all,<nic>}.arp_ignore = 1`` / ``arp_announce = 2`` so that only the
director answers ARP for the VIP — live, and persistent (``/etc/sysctl.d/90-saru-realserver.conf`` and a
network configuration snippet, see ``netconf``). IPv6 VIPs need no sysctl: Linux answers neighbour
solicitations only for addresses of the receiving interface, so a /128 on ``lo`` is never announced.

* ``plan(want, seen)`` (pure) → ``Step`` list, each knowing whether it is already done;
  ``check_items`` turns it into the checklist (plus boot-time overrides found in other sysctl files).
* ``apply(...)`` executes the steps not done and records in a state file (``/var/lib/saru/realserver.json``
  under ``--root``) exactly what it changed: addresses it added, each sysctl's previous value, each file's
  previous content (or absence). ``undo(...)`` reverts exactly those changes and nothing else — a value
  that was already right before ``apply`` is never touched.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from saru.setup import netconf, sysctl
from saru.setup.item import Item

SYSCTL_FILE = "/etc/sysctl.d/90-saru-realserver.conf"
STATE_FILE = "/var/lib/saru/realserver.json"
ARP_SETTINGS = (("arp_ignore", "1"), ("arp_announce", "2"))
SYSCTL_HEADER = ("saru realserver: answer ARP only for addresses of the receiving interface (arp_ignore=1)\n"
                 "and never announce the loopback VIP as ARP source (arp_announce=2), so that only the\n"
                 "director answers ARP for the VIP (LVS direct routing). Written by `saru realserver apply`;\n"
                 "removed by `saru realserver apply --undo`.")


class SetupError(Exception):
    """Bad input or a step that could not be done; the message says which."""


@dataclass(frozen=True)
class Want:
    """What the operator asked for."""

    vips: tuple[str, ...]  # bare addresses
    interface: str | None  # outgoing interface (IPv4 ARP sysctls); None with IPv6-only VIPs
    netconf: str  # one of netconf.SYSTEMS

    @property
    def v4(self) -> tuple[str, ...]:
        return tuple(v for v in self.vips if ipaddress.ip_address(v).version == 4)


@dataclass(frozen=True)
class Seen:
    """What the host has now. ``lo`` None = not looked at (``--no-runtime``)."""

    lo: frozenset[str] | None  # "address/prefix" on lo
    sysctls: Mapping[str, str | None]  # live values (absent key = not looked at)
    files: Mapping[str, str | None]  # path (without root) → content, None = absent
    boot: Mapping[tuple[str, ...], tuple[str, str]] = field(default_factory=dict)  # sysctl.boot_values
    elsewhere: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # VIP → "addr/prefix dev IF" not on lo


@dataclass(frozen=True)
class Step:
    kind: Literal["address", "sysctl", "file"]
    target: str  # "10.0.0.1/32", a sysctl key, or a path (without root)
    value: str  # the address, the wanted value, or the file content
    current: str | None
    done: bool
    mode: int = 0o644
    runtime: bool = True  # False for files
    note: str = ""

    def describe(self) -> str:
        if self.kind == "address":
            return f"VIP {self.target} on lo"
        if self.kind == "sysctl":
            return f"{self.target} = {self.value}"
        return f"persistent: {self.target}{f' ({self.note})' if self.note else ''}"


def host_cidr(vip: str) -> str:
    address = ipaddress.ip_address(vip)
    return f"{address}/{address.max_prefixlen}"


def parse_vips(values: Sequence[str]) -> tuple[str, ...]:
    """Bare VIP addresses from ``--vip`` values (a /32 or /128 suffix is accepted; others are refused)."""
    vips: list[str] = []
    for text in values:
        try:
            item = ipaddress.ip_interface(text)
        except ValueError:
            raise SetupError(f"--vip {text!r} is not an IP address") from None
        if "/" in text and item.network.prefixlen != item.max_prefixlen:
            raise SetupError(f"--vip {text}: a VIP on the loopback must be a host address "
                             f"(/{item.max_prefixlen}), not /{item.network.prefixlen}")
        if item.ip.is_loopback or item.ip.is_multicast or item.ip.is_unspecified:
            raise SetupError(f"--vip {text} cannot be a virtual service address")
        if str(item.ip) not in vips:
            vips.append(str(item.ip))
    if not vips:
        raise SetupError("give at least one --vip")
    return tuple(vips)


def sysctl_settings(want: Want) -> list[tuple[str, str]]:
    """(key, value) in the guide's order: all, then the outgoing interface (IPv4 VIPs only)."""
    if not want.v4:
        return []
    settings = []
    for name, value in ARP_SETTINGS:
        settings.append((sysctl.conf_key("all", name), value))
        if want.interface:
            settings.append((sysctl.conf_key(want.interface, name), value))
    return settings


def sysctl_file(want: Want) -> str:
    return sysctl.render(sysctl_settings(want), SYSCTL_HEADER)


def _sysctl_done(current: str | None, wanted: str) -> bool:
    """arp_ignore 2/3/8 are stricter than 1 (still silent for a VIP on lo); arp_announce 2 is the maximum."""
    try:
        return current is not None and int(current) >= int(wanted)
    except ValueError:
        return False


def plan(want: Want, seen: Seen) -> list[Step]:
    """Every step of the preparation, each marked done or not (pure)."""
    steps: list[Step] = []
    if seen.lo is not None:
        for vip in want.vips:
            cidr = host_cidr(vip)
            steps.append(Step("address", cidr, vip, cidr if cidr in seen.lo else None, cidr in seen.lo))
    for key, value in sysctl_settings(want):
        if key in seen.sysctls:
            current = seen.sysctls[key]
            steps.append(Step("sysctl", key, value, current, _sysctl_done(current, value)))
    files: list[tuple[str, str, int, str]] = []
    if want.v4:
        files.append((SYSCTL_FILE, sysctl_file(want), 0o644, "sysctl.d"))
    for snip in netconf.snippets(want.netconf, want.vips):
        files.append((snip.path, snip.content, snip.mode, snip.system))
    for path, content, mode, note in files:
        current = seen.files.get(path)
        steps.append(Step("file", path, content, current, current == content, mode, False, note))
    return steps


def boot_items(want: Want, seen: Seen) -> list[Item]:
    """Warnings for ARP settings that another sysctl file overrides at boot (pure)."""
    items = []
    for key, value in sysctl_settings(want):
        winner = seen.boot.get(sysctl.normalize(key))
        if winner is None or winner[1] == SYSCTL_FILE or _sysctl_done(winner[0], value):
            continue
        items.append(Item(f"at boot: {key}", "warn", f"{winner[1]} sets {winner[0]} after {SYSCTL_FILE}",
                          f"remove or fix that line in {winner[1]}"))
    return items


def check_items(want: Want, seen: Seen, root: str = "/") -> list[Item]:
    """The checklist of ``saru realserver check`` (pure)."""
    items = []
    under = "" if root in ("", "/") else f" --root {root}"
    vips = " ".join(f"--vip {v}" for v in want.vips)
    fix_all = f"saru realserver apply {vips}{f' --interface {want.interface}' if want.interface else ''}{under}"
    for step in plan(want, seen):
        if step.done:
            detail = "present" if step.kind != "sysctl" else f"is {step.current}"
            items.append(Item(step.describe(), "ok", detail))
            continue
        if step.kind == "address":
            items.append(Item(step.describe(), "missing", "not on lo", f"ip addr add {step.target} dev lo"))
        elif step.kind == "sysctl":
            now = "key does not exist" if step.current is None else f"is {step.current}"
            items.append(Item(step.describe(), "missing", now, f"sysctl -w {step.target}={step.value}"))
        else:
            now = "absent" if step.current is None else "differs from what apply writes"
            items.append(Item(step.describe(), "missing", now, fix_all))
    for vip, where in seen.elsewhere.items():  # on the NIC, the real answers ARP/NDP for it whatever the sysctls
        items.append(Item(f"VIP {vip} only on lo", "fail", f"also on {', '.join(where)}: this real would answer "
                          "ARP / neighbour solicitations for it and take the director's traffic",
                          f"ip addr del {where[0]}"))
    items += boot_items(want, seen)
    if want.netconf == "network-scripts" and len(want.v4) < len(want.vips):
        items.append(Item("persistent: IPv6 VIPs (network-scripts)", "warn",
                          "initscripts cannot put IPv6 addresses on a loopback alias; they are not persistent",
                          "add IPV6ADDR_SECONDARIES=\"" + " ".join(host_cidr(v) for v in want.vips if ":" in v)
                          + "\" to /etc/sysconfig/network-scripts/ifcfg-lo"))
    if want.netconf == "ifupdown" and not netconf.ifupdown_sources_snippets(Path(root)):
        items.append(Item("ifupdown reads /etc/network/interfaces.d", "warn",
                          "/etc/network/interfaces has no 'source /etc/network/interfaces.d/*' line",
                          "echo 'source /etc/network/interfaces.d/*' >> /etc/network/interfaces"))
    return items


# --------------------------------------------------------------------------------------------------
# the edge: observing and changing the host
# --------------------------------------------------------------------------------------------------


def under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _read_file(root: Path, path: str) -> str | None:
    try:
        return under(root, path).read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SetupError(f"cannot read {under(root, path)}: {exc.strerror or exc}") from None


def observe(want: Want, root: Path, runtime: bool) -> Seen:
    """Look at the host (live state only when ``runtime``) and at the files under ``root``."""
    from saru.setup import netinfo

    lo: frozenset[str] | None = None
    live: dict[str, str | None] = {}
    elsewhere: dict[str, tuple[str, ...]] = {}
    if runtime:
        try:
            everywhere = netinfo.addresses()
        except Exception as exc:
            raise SetupError(f"cannot read the addresses of this host: {exc}") from exc
        lo = frozenset(str(a) for a in everywhere.get("lo", []))
        for vip in want.vips:
            found = tuple(f"{a} dev {name}" for name, items in sorted(everywhere.items()) if name != "lo"
                          for a in items if str(a.ip) == vip)
            if found:
                elsewhere[vip] = found
        for key, _ in sysctl_settings(want):
            live[key] = sysctl.read(key)
    paths = [SYSCTL_FILE]
    paths += [snip.path for snip in netconf.snippets(want.netconf, want.vips)]
    files = {path: _read_file(root, path) for path in paths}
    return Seen(lo, live, files, sysctl.boot_values(sysctl.read_config_files(root)), elsewhere)


def write_file(root: Path, path: str, content: str, mode: int = 0o644) -> None:
    """Atomically replace a file (temporary file + rename), creating its directories."""
    target = under(root, path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.saru-tmp")
        with open(tmp, "w") as fh:
            fh.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as exc:
        raise SetupError(f"cannot write {target}: {exc.strerror or exc}") from None


def load_state(root: Path) -> dict[str, Any]:
    text = _read_file(root, STATE_FILE)
    if text is None:
        return {"version": 1, "addresses": [], "sysctls": {}, "files": {}}
    try:
        state: dict[str, Any] = json.loads(text)
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError("unknown format")
    except ValueError as exc:
        raise SetupError(f"{under(root, STATE_FILE)} is not a saru state file ({exc}); "
                         "move it away and check by hand") from None
    state.setdefault("addresses", [])
    state.setdefault("sysctls", {})
    state.setdefault("files", {})
    return state


def save_state(root: Path, state: dict[str, Any]) -> None:
    write_file(root, STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o644)


@dataclass
class Change:
    """One thing apply/undo did, for the report."""

    action: str
    target: str
    detail: str = ""

    def text(self) -> str:
        return f"{self.action} {self.target}{f' ({self.detail})' if self.detail else ''}"


def apply(want: Want, root: Path, runtime: bool = True,
          report: Callable[[Change], None] | None = None) -> list[Change]:
    """Do every step not done yet; record each change in the state file as soon as it is made."""
    from saru.setup import netinfo

    seen = observe(want, root, runtime)
    todo = [step for step in plan(want, seen) if not step.done]
    changes: list[Change] = []
    if not todo:
        return changes
    state = load_state(root)
    _note_new_dirs(root, STATE_FILE, state)

    def done(change: Change) -> None:
        save_state(root, state)
        changes.append(change)
        if report is not None:
            report(change)

    for step in todo:
        # each change is recorded before it is made: a crash in between still undoes cleanly
        if step.kind == "address":
            if step.target not in state["addresses"]:
                state["addresses"].append(step.target)
            save_state(root, state)
            try:
                netinfo.add_address("lo", step.target)
            except netinfo.NetError as exc:
                raise SetupError(str(exc)) from None
            done(Change("added", f"{step.target} on lo"))
        elif step.kind == "sysctl":
            entry = state["sysctls"].setdefault(step.target, {"previous": step.current})
            entry["written"] = step.value
            save_state(root, state)
            try:
                sysctl.write(step.target, step.value)
            except OSError as exc:
                raise SetupError(f"cannot set {step.target}: {exc.strerror or exc}") from None
            done(Change("set", f"{step.target} = {step.value}", f"was {step.current}"))
        else:
            entry = state["files"].setdefault(step.target, {"previous": step.current})
            entry["written"] = step.value
            _note_new_dirs(root, step.target, state)
            save_state(root, state)
            write_file(root, step.target, step.value, step.mode)
            done(Change("wrote", step.target, "new file" if step.current is None else "replaced"))
    return changes


def _note_new_dirs(root: Path, path: str, state: dict[str, Any]) -> None:
    """Record the directories writing ``path`` will create (undo removes them again if empty)."""
    dirs = state.setdefault("dirs", [])
    parent = Path(path).parent
    while str(parent) != "/" and not under(root, str(parent)).exists():
        if str(parent) not in dirs:
            dirs.append(str(parent))
        parent = parent.parent


def undo(root: Path, runtime: bool = True, report: Callable[[Change], None] | None = None) -> list[Change]:
    """Revert exactly what the state file says apply changed; then remove the state file."""
    from saru.setup import netinfo

    if _read_file(root, STATE_FILE) is None:
        return []
    state = load_state(root)
    changes: list[Change] = []

    def note(change: Change) -> None:
        changes.append(change)
        if report is not None:
            report(change)

    if runtime:
        present = {str(a) for a in netinfo.addresses().get("lo", [])}
        for cidr in state["addresses"]:
            if cidr in present:
                try:
                    netinfo.del_address("lo", cidr)
                except netinfo.NetError as exc:
                    raise SetupError(str(exc)) from None
                note(Change("removed", f"{cidr} from lo"))
        for key, entry in state["sysctls"].items():
            previous, written = entry.get("previous"), entry.get("written")
            current = sysctl.read(key)
            if previous is None or current is None:
                continue
            if current != written:
                note(Change("left", key, f"is {current} now, not the {written} apply set"))
                continue
            try:
                sysctl.write(key, previous)
            except OSError as exc:
                raise SetupError(f"cannot set {key}: {exc.strerror or exc}") from None
            note(Change("restored", f"{key} = {previous}"))
    for path, entry in state["files"].items():
        current = _read_file(root, path)
        previous, written = entry.get("previous"), entry.get("written")
        if current != written:
            note(Change("left", path, "changed since apply wrote it"))
        elif previous is None:
            try:
                under(root, path).unlink()
            except OSError as exc:
                raise SetupError(f"cannot remove {under(root, path)}: {exc.strerror or exc}") from None
            note(Change("removed", path))
        else:
            write_file(root, path, previous)
            note(Change("restored", path, "its content before apply"))
    if not runtime and (state["addresses"] or state["sysctls"]):  # keep what only a live undo can revert
        state["files"] = {}
        save_state(root, state)
    else:
        under(root, STATE_FILE).unlink()
        for directory in sorted(state.get("dirs", []), key=lambda d: -d.count("/")):
            try:
                under(root, directory).rmdir()
            except OSError:
                continue  # not empty (something else lives there now) or already gone
    return changes
