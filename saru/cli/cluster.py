"""``saru cluster crm|pcs|log``: the guide's Pacemaker configuration from saru.toml, and its readable log.

``saru cluster crm [--settings saru.toml] [--config ldirectord.cf] [--binary PATH]`` prints crm shell
text for ``crm configure load update FILE``; ``saru cluster pcs`` prints the same as pcs commands.
The director resource runs the ldirectord.cf named by ``--config`` (default: saru.toml's
``[director] config``) with the executable named by ``--binary`` (default: this installation's
``saru``, or ``saru-ldirectord`` when ``[cluster] agent = "ldirectord"``), as an absolute path because
Pacemaker runs agents with a system PATH.

``saru cluster log [FILE…] [--follow] [--json]`` prints Pacemaker/Corosync logs (default
``/var/log/pacemaker/pacemaker.log``) as short operator messages, one line per event (what the guide gets
from pm_logconv; the conversion is ``saru.cluster.logconv``); ``--follow`` keeps reading like ``tail -F``,
across log rotation.
"""

from __future__ import annotations

import argparse
import gzip
import heapq
import json
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from saru.cli.target import TargetError, split_files
from saru.cluster.crm import ClusterConfigError, crm_configuration, pcs_commands, pcs_script
from saru.cluster.logconv import ClusterEvent, Converter, converter_for, sort_key
from saru.config.diagnostics import ConfigError
from saru.config.native import load_settings
from saru.model import Settings

DEFAULT_SETTINGS = "/etc/saru/saru.toml"
DEFAULT_LOG = "/var/log/pacemaker/pacemaker.log"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cluster", help="Pacemaker: print the configuration (crm, pcs) or read the cluster log",
                       description="Generate the guide's Pacemaker configuration from saru.toml: the group "
                                   "VIPcheck -> IPaddr2 -> director, the ping clone and its constraints, "
                                   "no fencing, no quorum policy, no fail-back.")
    tools = p.add_subparsers(dest="tool", metavar="TOOL")
    tools.required = True
    for tool, text in (("crm", "crm shell text (crm configure load update FILE)"),
                       ("pcs", "pcs commands, one per line")):
        t = tools.add_parser(tool, help=text, description=f"Print the cluster configuration as {text}.")
        t.add_argument("--settings", "-s", metavar="FILE", default=None,
                       help=f"saru.toml with [ha] (default {DEFAULT_SETTINGS})")
        t.add_argument("--config", "-c", metavar="FILE",
                       help="ldirectord.cf the director runs (default: [director] config of saru.toml)")
        t.add_argument("--binary", metavar="PATH",
                       help="absolute path of saru (or saru-ldirectord) on the cluster nodes "
                            "(default: this installation's)")
        t.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of standard output")
        t.set_defaults(func=run)
    lg = tools.add_parser("log", help="Pacemaker/Corosync logs as short operator messages (like pm_logconv)",
                          description="Print the cluster's events — nodes joining and leaving, standby, the DC, "
                                      "resources started, stopped or failed, monitor failures, failovers, ping "
                                      "scores — one short line each, from Pacemaker's and Corosync's logs.")
    lg.add_argument("files", nargs="*", metavar="FILE",
                    help=f"pacemaker.log / corosync.log / syslog files of one node, merged by time (default "
                         f"{DEFAULT_LOG}; .gz is read too)")
    lg.add_argument("--follow", "-f", action="store_true",
                    help="keep printing new events as the logs grow (like tail -F: survives rotation)")
    lg.add_argument("--lines", "-n", type=int, metavar="N",
                    help="only the last N events of what is already logged (default: all; 10 with --follow)")
    lg.add_argument("--json", action="store_true", help="one JSON object per event")
    lg.add_argument("--settings", "-s", metavar="FILE",
                    help=f"saru.toml naming the group and ping attribute (default {DEFAULT_SETTINGS} if present)")
    lg.set_defaults(func=run_log)


def default_binary(name: str) -> str:
    """This installation's executable ``name``: next to the running interpreter's scripts, else on PATH."""
    candidate = Path(sys.prefix) / "bin" / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name) or name


def run(args: argparse.Namespace) -> int:
    try:
        cf, toml = split_files(args.config, args.settings)  # -c saru.toml works as --settings
    except TargetError as exc:
        print(f"saru cluster: {exc}", file=sys.stderr)
        return 2
    path = toml or DEFAULT_SETTINGS
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    for warning in settings.warnings:
        print(warning, file=sys.stderr)
    config = cf or settings.director.config
    if not config:
        print(f"saru cluster: {path} names no ldirectord.cf ([director] config); give --config FILE",
              file=sys.stderr)
        return 2
    config = os.path.abspath(config)
    if not os.path.isfile(config):
        print(f"saru cluster: warning: {config} does not exist here (it must exist on the cluster nodes)",
              file=sys.stderr)
    _warn_mode(settings, path)
    name = "saru" if settings.cluster.agent == "saru" else "saru-ldirectord"
    binary = args.binary or default_binary(name)
    if not os.path.isabs(binary):
        print(f"saru cluster: warning: binary {binary!r} is not an absolute path; Pacemaker's PATH may not "
              "find it (use --binary)", file=sys.stderr)
    settings_path = settings.path if settings.cluster.agent == "saru" else None
    try:
        if args.tool == "crm":
            text = crm_configuration(settings, config=config, binary=binary, settings_path=settings_path,
                                     source=settings.path)
        else:
            text = pcs_script(pcs_commands(settings, config=config, binary=binary, settings_path=settings_path),
                              source=settings.path)
    except ClusterConfigError as exc:
        print(f"saru cluster: {path}: {exc}", file=sys.stderr)
        return 2
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"saru cluster: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


def _warn_mode(settings: Settings, path: str) -> None:
    if settings.ha is not None and settings.ha.mode != "pacemaker":
        print(f'saru cluster: warning: {path}: [ha] mode is "{settings.ha.mode}"; set mode = "pacemaker" so '
              "that the director leaves the floating IP to the cluster", file=sys.stderr)


# -- saru cluster log --------------------------------------------------------------------------------


def _converter(args: argparse.Namespace) -> Converter | None:
    """A converter that knows saru.toml's group and ping attribute names (None: a bad --settings)."""
    path = args.settings or (DEFAULT_SETTINGS if os.path.isfile(DEFAULT_SETTINGS) else None)
    if path is None:
        return Converter()
    try:
        cluster = load_settings(path).cluster
    except ConfigError as exc:
        if args.settings:
            print(exc, file=sys.stderr)
            return None
        return Converter()  # an unreadable default saru.toml does not stop anyone reading logs
    return converter_for(cluster)


def _open(path: str) -> IO[str]:
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _render(event: ClusterEvent, as_json: bool) -> str:
    return json.dumps(event.as_dict(), ensure_ascii=False) if as_json else event.line()


def run_log(args: argparse.Namespace) -> int:
    converter = _converter(args)
    if converter is None:
        return 2
    if args.lines is not None and args.lines < 0:
        print("saru cluster log: --lines must be 0 or more", file=sys.stderr)
        return 2
    paths = args.files or [DEFAULT_LOG]
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    try:
        if args.follow:
            return _follow_log(converter, paths, args)
        return _print_log(converter, paths, args)
    except BrokenPipeError:  # saru cluster log | head
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


def _print_log(converter: Converter, paths: list[str], args: argparse.Namespace) -> int:
    files = []
    try:
        for path in paths:
            try:
                files.append(_open(path))
            except OSError as exc:
                print(f"saru cluster log: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
                return 1
        events: Iterable[ClusterEvent] = converter.convert(heapq.merge(*files, key=sort_key))
        if args.lines is not None:
            events = deque(events, maxlen=args.lines)
        for event in events:
            print(_render(event, args.json))
    except (OSError, EOFError) as exc:
        print(f"saru cluster log: read error: {exc}", file=sys.stderr)
        return 1
    finally:
        for f in files:
            f.close()
    return 0


def _follow_log(converter: Converter, paths: list[str], args: argparse.Namespace) -> int:
    backlog: deque[ClusterEvent] | None = deque(maxlen=10 if args.lines is None else args.lines)
    for path in paths:
        if not os.path.exists(path):
            print(f"saru cluster log: {path} does not exist yet; waiting for it", file=sys.stderr)
    for text in follow(paths):
        if text is None:  # caught up: show the last events of the backlog, then everything new
            if backlog is not None:
                for event in backlog:
                    print(_render(event, args.json))
                backlog = None
            sys.stdout.flush()
            continue
        for event in converter.feed(text):
            if backlog is not None:
                backlog.append(event)
            else:
                print(_render(event, args.json), flush=True)
    return 0


class _Tail:
    """One followed file: reopened when it is replaced (rotation) or truncated."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fh: IO[str] | None = None
        self.inode: tuple[int, int] | None = None
        self.partial = ""

    def read(self) -> list[str]:
        lines: list[str] = []
        if self.fh is None and not self._open():
            return lines
        assert self.fh is not None
        lines += self._drain()
        try:
            st = os.stat(self.path)
            replaced = (st.st_dev, st.st_ino) != self.inode
            truncated = not replaced and st.st_size < self.fh.tell()
        except OSError:  # rotated away, not yet recreated: keep the old file until a new one appears
            return lines
        if replaced or truncated:
            lines += self._drain()
            if self.partial:
                lines.append(self.partial)
                self.partial = ""
            self.fh.close()
            self.fh = None
            if self._open():
                lines += self._drain()
        return lines

    def _open(self) -> bool:
        try:
            self.fh = open(self.path, encoding="utf-8", errors="replace")
            st = os.fstat(self.fh.fileno())
        except OSError:
            return False
        self.inode = (st.st_dev, st.st_ino)
        return True

    def _drain(self) -> list[str]:
        assert self.fh is not None
        data = self.partial + self.fh.read()
        *lines, self.partial = data.split("\n")
        return lines

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def follow(paths: list[str], poll: float = 0.25, stop: Callable[[], bool] = lambda: False) -> Iterator[str | None]:
    """The lines of ``paths`` as they are written, like ``tail -F`` from the start of each file.

    Yields None each time every file is caught up (then waits ``poll`` seconds before looking again);
    a file that does not exist yet is waited for; a replaced or truncated file is read again from its
    start. Ends when ``stop()`` is true."""
    tails = [_Tail(p) for p in paths]
    try:
        while not stop():
            batch = [line for tail in tails for line in tail.read()]
            if batch:
                yield from sorted(batch, key=sort_key) if len(tails) > 1 else batch
                continue
            yield None
            time.sleep(poll)
    finally:
        for tail in tails:
            tail.close()
