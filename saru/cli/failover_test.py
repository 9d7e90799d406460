"""``saru failover-test``: the guide's last step as a command — move the VIP to the peer (and back).

Run it against the active director of a Saru VRRP pair (``[ha] mode = "vrrp"``). It asks the daemon to
resign (priority-0 advert; the daemon refuses mastership for ``--hold`` seconds), waits until the peer
is master, and with ``--back`` takes the VIP back. With ``--probe HOST:PORT`` a client loop (TCP
connects, or HTTP GETs with ``--http PATH``, at 20 Hz, from the machine running this command) measures
the longest gap between two successful requests in each phase: the outage a client saw.

Note: in direct-routing mode a director cannot reach its own VIP through the table (the VIP is local
to it), so run the probe from a machine that reaches the VIP like a client does, with ``--control``
pointing at the director's socket (or use the probe in NAT mode).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saru.cli.common import add_target_arguments, target_of
from saru.control import request_sync

PROBE_PERIOD = 0.05  # 20 Hz


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("failover-test", help="move the floating IP to the peer director (and back), measuring it",
                       description="On the active director of a VRRP pair: resign, wait until the peer is "
                                   "master, optionally take the VIP back (--back); --probe measures the outage a "
                                   "client sees.")
    add_target_arguments(p)
    p.add_argument("--probe", metavar="HOST:PORT", help="connect to HOST:PORT at 20 Hz during the test")
    p.add_argument("--http", metavar="PATH", help="probe with HTTP GET PATH instead of a bare TCP connect")
    p.add_argument("--back", action="store_true", help="take the VIP back afterwards (takeover)")
    p.add_argument("--hold", type=float, default=None, metavar="S",
                   help="seconds this node refuses mastership after resigning (default 60, or 10 with --back)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for each switch (default 10)")
    p.add_argument("--settle", type=float, default=1.0, metavar="S",
                   help="seconds of probing after each switch before it is judged (default 1)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------------------------------
# the probe
# --------------------------------------------------------------------------------------------------


@dataclass
class Probe:
    """A client loop in a thread; ``samples`` are (monotonic time, ok)."""

    host: str
    port: int
    http_path: str | None = None
    samples: list[tuple[float, bool]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="failover-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            ok, error = self.once()
            now = time.monotonic()
            self.samples.append((now, ok))
            if error:
                self.errors[error] = self.errors.get(error, 0) + 1
            next_at = max(next_at + PROBE_PERIOD, now)
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def once(self) -> tuple[bool, str | None]:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                if self.http_path is None:
                    return True, None
                sock.settimeout(1.0)
                request = f"GET {self.http_path} HTTP/1.0\r\nHost: {self.host}\r\nConnection: close\r\n\r\n"
                sock.sendall(request.encode())
                data = sock.recv(64)
                if data.startswith(b"HTTP/") and b" 200 " in data[:16]:
                    return True, None
                return False, "bad HTTP answer"
        except OSError as exc:
            return False, type(exc).__name__

    def gap(self, start: float, end: float) -> dict[str, Any]:
        """Longest time between two successes in [start, end] (edges count as successes)."""
        window = [(t, ok) for t, ok in self.samples if start <= t <= end]
        last_ok = start
        longest = 0.0
        failed = 0
        for t, ok in window:
            if ok:
                longest = max(longest, t - last_ok)
                last_ok = t
            else:
                failed += 1
        if window and not window[-1][1]:
            longest = max(longest, end - last_ok)
        return {"longest_gap": round(longest, 4), "attempts": len(window), "failed": failed}


# --------------------------------------------------------------------------------------------------
# the test
# --------------------------------------------------------------------------------------------------


class TestError(Exception):
    """The test cannot go on; the message says why."""


def _ha(path: Path) -> dict[str, Any]:
    answer = request_sync(path, "ha")
    if not answer.get("ok"):
        raise TestError(answer.get("error", "the daemon refused the ha command"))
    ha: dict[str, Any] = answer["ha"]
    return ha


def _wait(path: Path, wanted: str, timeout: float) -> tuple[float, dict[str, Any]]:
    """Poll until the local node is ``wanted`` (backup with a known other master / master with the VIP)."""
    deadline = time.monotonic() + timeout
    while True:
        ha = _ha(path)
        if wanted == "peer" and ha["state"] == "backup" and ha.get("master") and ha["master"] != ha.get("primary"):
            return time.monotonic(), ha
        if wanted == "master" and ha["state"] == "master" and ha.get("vip_up"):
            return time.monotonic(), ha
        if time.monotonic() > deadline:
            raise TestError(f"no switch within {timeout:g} s (this node: {ha['state'].upper()}, master "
                            f"{ha.get('master') or 'unknown'})")
        time.sleep(0.01)


def failover_test(path: Path, *, back: bool, hold: float, timeout: float, settle: float,
                  probe: Probe | None) -> dict[str, Any]:
    before = _ha(path)
    if before["state"] != "master":
        raise TestError(f"this director is {before['state'].upper()} (master: {before.get('master') or 'unknown'});"
                        " run failover-test on the active one")
    result: dict[str, Any] = {"node": before.get("primary"), "vips": before.get("vips"), "steps": []}
    if probe is not None:
        probe.start()
        time.sleep(settle / 2)  # a baseline: the probe must work before the switch
    try:
        t0 = time.monotonic()
        answer = request_sync(path, "ha-resign", hold=hold)
        if not answer.get("ok"):
            raise TestError(answer.get("error", "resign refused"))
        t1, after = _wait(path, "peer", timeout)
        time.sleep(settle)
        step: dict[str, Any] = {"action": "resign", "to": after.get("master"), "switch_seconds": round(t1 - t0, 4)}
        if probe is not None:
            step["client"] = probe.gap(t0 - settle / 2, time.monotonic())
        result["steps"].append(step)
        if back:
            t0 = time.monotonic()
            answer = request_sync(path, "ha-takeover")
            if not answer.get("ok"):
                raise TestError(answer.get("error", "takeover refused"))
            t1, after = _wait(path, "master", timeout)
            time.sleep(settle)
            step = {"action": "takeover", "to": after.get("primary"), "switch_seconds": round(t1 - t0, 4)}
            if probe is not None:
                step["client"] = probe.gap(t0, time.monotonic())
            result["steps"].append(step)
    finally:
        if probe is not None:
            probe.stop()
            result["probe"] = {"target": f"{probe.host}:{probe.port}", "http": probe.http_path,
                               "errors": dict(probe.errors)}
    return result


def render(result: dict[str, Any]) -> str:
    lines = [f"failover test of {', '.join(result.get('vips') or [])} from {result.get('node')}"]
    for step in result["steps"]:
        text = f"  {step['action']:<8} → master {step['to']} in {step['switch_seconds'] * 1000:.0f} ms"
        client = step.get("client")
        if client:
            text += (f"; client: longest gap {client['longest_gap'] * 1000:.0f} ms, "
                     f"{client['failed']}/{client['attempts']} probes failed")
        lines.append(text)
    probe = result.get("probe")
    if probe and probe["errors"]:
        lines.append("  probe errors: " + ", ".join(f"{k} x{v}" for k, v in probe["errors"].items()))
    return "\n".join(lines)


def _parse_target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"--probe {text!r}: expected HOST:PORT (IPv6 as [addr]:port)")
    return host.strip("[]"), int(port)


def run(args: argparse.Namespace) -> int:
    probe = None
    if args.probe:
        try:
            host, port = _parse_target(args.probe)
        except ValueError as exc:
            print(f"saru failover-test: {exc}", file=sys.stderr)
            return 2
        probe = Probe(host, port, args.http)
    elif args.http:
        print("saru failover-test: --http needs --probe HOST:PORT", file=sys.stderr)
        return 2
    hold = args.hold if args.hold is not None else (10.0 if args.back else 60.0)
    target = target_of(args, "saru failover-test")
    if target is None:
        return 2
    path = target.control
    try:
        result = failover_test(path, back=args.back, hold=hold, timeout=args.timeout, settle=args.settle,
                               probe=probe)
    except TestError as exc:
        print(f"saru failover-test: {exc}", file=sys.stderr)
        return 1
    except (OSError, ConnectionError, TimeoutError) as exc:
        print(f"saru failover-test: cannot reach the daemon at {path}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0
