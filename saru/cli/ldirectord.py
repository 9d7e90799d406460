"""``saru-ldirectord``: the ldirectord-compatible command (minimal in this release).

Accepts ``[-d] [configfile] start|stop|reload|force-reload|status`` with ldirectord's config lookup
(``/etc/ha.d/<name>``, ``/etc/ha.d/conf/<name>``, then the path). ``start`` runs the director
(in the foreground with ``-d``); the other verbs talk to it through its control socket. The full
contract (daemonising, pid-file names, exit codes and status texts for Pacemaker's OCF agent) is
tracked separately.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from saru.control import default_socket_path, request_sync
from saru.daemon import Daemon, DaemonOptions

COMMANDS = ("start", "stop", "reload", "force-reload", "status")


def find_config(name: str | None) -> str:
    """ldirectord's lookup order for the config argument."""
    name = name or "ldirectord.cf"
    for candidate in (f"/etc/ha.d/{name}", f"/etc/ha.d/conf/{name}", name):
        if os.path.isfile(candidate):
            return candidate
    return name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="saru-ldirectord", description=__doc__)
    parser.add_argument("-d", "--debug", action="store_true", help="foreground, log to stderr")
    parser.add_argument("args", nargs="+", metavar="[configfile] command")
    ns = parser.parse_args(argv)
    if len(ns.args) > 2 or ns.args[-1] not in COMMANDS:
        parser.print_usage(sys.stderr)
        return 255
    config = find_config(ns.args[0] if len(ns.args) == 2 else None)
    command = ns.args[-1]
    socket_path = default_socket_path(config)
    if command == "start":
        options = DaemonOptions(config_path=config, dataplane="auto",
                                console=sys.stderr if ns.debug else None, debug=ns.debug)
        return asyncio.run(Daemon(options).run())
    try:
        answer = request_sync(socket_path, {"status": "status", "stop": "stop"}.get(command, "reload"))
    except OSError:
        if command == "status":
            print(f"saru-ldirectord for {config} is stopped", file=sys.stderr)
            return 3
        return 0 if command == "stop" else 1
    if command == "status":
        print(f"saru-ldirectord for {config} is running with pid: {answer.get('pid')}", file=sys.stderr)
    return 0 if answer.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
