"""HTTPS check benchmark: this tree's HTTPS checks per CPU-second side by side with another tree's.

One run prints and saves (``bench/results/https_checks.json``), with the machine's load average:

1. **Rates**: one real nginx serving /check.html over TLS (RSA 2048, nginx defaults: session
   tickets on; nginx 1.22 speaks TLS 1.2 by default) on 200 loopback addresses; in interleaved
   rounds, each tree's HTTPS ``negotiate`` check with TLS sessions resumed (the default) and with
   full handshakes (``tls_session_resumption = false``), each measured in a fresh worker process
   (one ``Monitor``, every real every 0.5 s, the worker's user + system CPU over the window) — this
   tree and, with ``--peer DIR`` (repeatable), others (the code before a change: ``git archive main
   | tar -x -C DIR``); beside each the nginx CPU per check and the median ``CheckResult.latency`` of
   20 checks of one real one after the other.
2. **Per-phase profile** of a blocking TLS check loop (no event loop; ``time.thread_time`` per
   phase: connect, set-up of the TLS connection with the session offered, handshake, request and
   response, close) with the ``ssl`` module and, when installed, pyOpenSSL (not a dependency: the
   lever measured for issue 16), full and resumed: where a check's CPU goes.

Takes about two minutes per tree (``--rounds 3 --seconds 4``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "https_checks.json"
REQUEST = b"GET /check.html HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
PHASES = ("connect", "setup", "handshake", "exchange", "close")
#: the ``ssl`` module's default client cipher string (CPython 3.10+), for the pyOpenSSL loop
CIPHERS = b"@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM"
RECORD = 16384
#: reals the blocking loop goes round (few, so that most of its checks resume)
PROFILE_REALS = 20


def worker(args: argparse.Namespace) -> None:
    """In a fresh process: the HTTPS check rate of the tree ``args.code`` (its ``saru`` is imported
    first, so every later ``saru.*`` import comes from it), printed as JSON."""
    sys.path.insert(0, args.code)
    import saru.checks.tlsclient as tlsclient

    sys.path.insert(1, str(ROOT))
    from bench.checks_bench import throughput

    endpoints = [(a, p) for a, p in json.loads(args.endpoints)]
    tlsclient.configure(resume=args.mode == "resumed")
    nginx = _Pids(args.nginx_pid)
    full, resumed = tlsclient.SESSIONS.full, tlsclient.SESSIONS.resumed
    rate = asyncio.run(throughput(endpoints, "negotiate", args.seconds, service="https",
                                  servers=[nginx]))  # type: ignore[list-item]
    full, resumed = tlsclient.SESSIONS.full - full, tlsclient.SESSIONS.resumed - resumed
    rate["resumed_share"] = round(resumed / (full + resumed), 3) if full + resumed else 0.0
    rate["latency_ms_median"] = round(statistics.median(asyncio.run(latencies(endpoints[0]))) * 1000, 2)
    rate["saru"] = str(Path(tlsclient.__file__).resolve().parent.parent.parent)
    print(json.dumps(rate))


async def latencies(endpoint: tuple[str, int], count: int = 20) -> list[float]:
    """``CheckResult.latency`` of ``count`` checks of one real one after the other (the first one full)."""
    from saru.checks.base import run_check
    from saru.model import CheckSpec

    spec = CheckSpec("negotiate", "https", "tcp", endpoint[0], endpoint[1], request="/check.html",
                     receive="OK alive", negotiatetimeout=5.0)
    return [(await run_check(spec)).latency for _ in range(count)]


class _Pids:
    """The CPU time of a running nginx (master and workers), for ``throughput``'s ``servers``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        from bench.checks_bench import children
        from bench.proc import cpu_seconds

        return sum(cpu_seconds(pid) for pid in [self.pid, *children(self.pid)])


def measure(code: Path, mode: str, endpoints: list[tuple[str, int]], pid: int, seconds: float) -> dict[str, object]:
    out = subprocess.run([sys.executable, __file__, "--worker", "--code", str(code), "--mode", mode,
                          "--endpoints", json.dumps(endpoints), "--nginx-pid", str(pid), "--seconds", str(seconds)],
                         check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _connect(endpoint: tuple[str, int]) -> socket.socket:
    """A blocking TCP connection with TCP_NODELAY, as the HTTPS check's (``saru.checks.tlsclient``)."""
    sock = socket.create_connection(endpoint)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


Stamp = Callable[[], None]


def _profile(endpoints: list[tuple[str, int]], count: int,
             check: Callable[[tuple[str, int], Stamp], bool]) -> dict[str, float]:
    """Per-phase CPU (µs per check) of ``count`` blocking checks round ``endpoints``: ``check(endpoint,
    stamp)`` runs one, calls ``stamp()`` at the end of each phase but the last and says whether it
    resumed."""
    spent = dict.fromkeys(PHASES, 0)
    reused = 0
    clock = time.thread_time_ns
    stamps: list[int] = []

    def stamp() -> None:
        stamps.append(clock())

    for n in range(count):
        stamps.clear()
        stamp()
        reused += check(endpoints[n % len(endpoints)], stamp)
        stamp()
        for phase, start, end in zip(PHASES, stamps[:-1], stamps[1:], strict=True):
            spent[phase] += end - start
    return {**{k: round(v / count / 1000, 1) for k, v in spent.items()}, "reused": reused / count}


def phases_ssl(endpoints: list[tuple[str, int]], resume: bool, count: int) -> dict[str, float]:
    """Per-phase CPU of a blocking check loop with the ``ssl`` module."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    sessions: dict[tuple[str, int], ssl.SSLSession] = {}

    def check(endpoint: tuple[str, int], stamp: Stamp) -> bool:
        sock = _connect(endpoint)
        stamp()
        tls = context.wrap_socket(sock, session=sessions.get(endpoint), do_handshake_on_connect=False)
        stamp()
        tls.do_handshake()
        stamp()
        tls.sendall(REQUEST)
        while tls.recv(65536):
            pass
        reused = tls.session_reused
        if not reused and resume and tls.session is not None:
            sessions[endpoint] = tls.session
        stamp()
        tls.close()
        return reused

    return _profile(endpoints, count, check)


def phases_pyopenssl(endpoints: list[tuple[str, int]], resume: bool, count: int) -> dict[str, float]:
    """The same loop with pyOpenSSL (not a dependency: ``pip install pyopenssl``), a context like the
    ``ssl`` module's default client context (no verification, TLS >= 1.2, the same cipher string).
    pyOpenSSL's ``set_session`` hands OpenSSL the session as it is; the ``ssl`` module copies it."""
    from OpenSSL import SSL
    from OpenSSL._util import lib  # SSL_session_reused: pyOpenSSL has no method for it

    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_verify(SSL.VERIFY_NONE)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_ALL | SSL.OP_NO_COMPRESSION)
    context.set_cipher_list(CIPHERS)
    sessions: dict[tuple[str, int], SSL.Session] = {}

    def check(endpoint: tuple[str, int], stamp: Stamp) -> bool:
        sock = _connect(endpoint)
        stamp()
        connection = SSL.Connection(context, sock)
        if endpoint in sessions:
            connection.set_session(sessions[endpoint])
        connection.set_connect_state()
        stamp()
        connection.do_handshake()
        stamp()
        connection.sendall(REQUEST)
        try:
            while connection.recv(RECORD):
                pass
        except (SSL.ZeroReturnError, SSL.SysCallError):
            pass
        reused = bool(lib.SSL_session_reused(connection._ssl))
        if not reused and resume and (session := connection.get_session()) is not None:
            sessions[endpoint] = session
        stamp()
        # no close_notify (as the ssl module's close), but marked shut down: OpenSSL marks the session
        # of a connection freed before its shutdown as not resumable
        connection.set_shutdown(SSL.SENT_SHUTDOWN | SSL.RECEIVED_SHUTDOWN)
        sock.close()
        return reused

    return _profile(endpoints, count, check)


def _pyopenssl_version() -> str | None:
    if not have_pyopenssl():
        return None
    from OpenSSL import SSL

    return SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()


def have_pyopenssl() -> bool:
    try:
        import OpenSSL  # noqa: F401
    except ImportError:
        return False
    return True


def main(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.checks_bench import NginxGroup, addresses, loadavg

    peers = [Path(peer).resolve() for peer in args.peer or []]
    trees = [("this tree", ROOT), *[(f"peer {peer.name}" if len(peers) > 1 else "peer", peer) for peer in peers]]
    base = Path(tempfile.mkdtemp(prefix="saru-https-bench-"))
    group = NginxGroup(base / "nginx-tls", addresses(112, 200, 18000 + random.randrange(1000)), tls=True)
    group.start()
    assert group.process is not None
    load_before = loadavg()
    rounds: list[dict[str, object]] = []
    profile: dict[str, list[dict[str, float]]] = {}
    try:
        print(f"HTTPS checks, 200 TLS reals, {args.rounds} rounds of {args.seconds:g} s windows, load {load_before}")
        for n in range(args.rounds):
            row: dict[str, object] = {"load": loadavg()}
            order = trees if n % 2 == 0 else trees[::-1]
            for name, code in order:
                for mode in ("resumed", "full"):
                    row[f"{name} {mode}"] = measure(code, mode, group.addresses, group.process.pid, args.seconds)
            loops = [("ssl", phases_ssl), *([("pyOpenSSL", phases_pyopenssl)] if have_pyopenssl() else [])]
            for label, loop in loops:
                for resume in (False, True):
                    profile.setdefault(f"{label} {'resumed' if resume else 'full'}", []).append(
                        loop(group.addresses[:PROFILE_REALS], resume, args.profile_checks))
            rounds.append(row)
            print(f"  round {n + 1} (load {row['load']}): " + ", ".join(
                f"{k} {v['checks_per_cpu_second']:,}" for k, v in row.items() if isinstance(v, dict)))  # type: ignore[index]
    finally:
        group.stop()
    load_after = loadavg()
    summary: dict[str, dict[str, float]] = {}
    for key in rounds[0]:
        if key == "load":
            continue
        cells = [r[key] for r in rounds]
        summary[key] = {
            "checks_per_cpu_second_median": statistics.median(c["checks_per_cpu_second"] for c in cells),  # type: ignore[index]
            "min": min(c["checks_per_cpu_second"] for c in cells),  # type: ignore[index]
            "max": max(c["checks_per_cpu_second"] for c in cells),  # type: ignore[index]
            "nginx_us_per_check_median": statistics.median(c["server_cpu_us_per_check"] for c in cells),  # type: ignore[index]
            "latency_ms_median": statistics.median(c["latency_ms_median"] for c in cells),  # type: ignore[index]
        }
    phases = {k: {p: statistics.median(r[p] for r in runs) for p in (*PHASES, "reused")} for k, runs in profile.items()}
    print()
    print(f"{'HTTPS negotiate':<30}{'checks/CPU-s':>13}{'(min-max)':>17}{'nginx us/check':>16}{'latency ms':>12}")
    for key, cell in summary.items():
        print(f"{key:<30}{cell['checks_per_cpu_second_median']:>13,.0f}"
              f"{'(' + format(cell['min'], ',.0f') + '-' + format(cell['max'], ',.0f') + ')':>17}"
              f"{cell['nginx_us_per_check_median']:>16,.0f}{cell['latency_ms_median']:>12.2f}")
    for name, _ in trees[1:]:
        for mode in ("resumed", "full"):
            ours, peer = summary[f"this tree {mode}"], summary[f"{name} {mode}"]
            ratio = ours["checks_per_cpu_second_median"] / peer["checks_per_cpu_second_median"]
            print(f"this tree / {name}, {mode}: {ratio:.2f}x")
    print(f"\nblocking loop, CPU us per check ({args.profile_checks} checks, median of rounds)")
    print(f"{'':<20}" + "".join(f"{p:>11}" for p in (*PHASES, "total")))
    for key, cell in phases.items():
        print(f"{key:<20}" + "".join(f"{cell[p]:>11.0f}" for p in PHASES) + f"{sum(cell[p] for p in PHASES):>11.0f}"
              + f"   resumed {cell['reused']:.0%}")
    print(f"load average before {load_before}, after {load_after}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"python": sys.version.split()[0], "ssl_openssl": ssl.OPENSSL_VERSION,
                    "pyopenssl_openssl": _pyopenssl_version(),
                    "load_before": load_before, "load_after": load_after},
        "peers": args.peer or [], "rounds": rounds, "summary": summary, "phases_us": phases,
    }, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measurement window per rate")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--peer", action="append", help="another saru source tree measured the same way in the "
                        "same run (e.g. `git archive main | tar -x -C /tmp/peer`); may be repeated")
    parser.add_argument("--profile-checks", type=int, default=600, help="checks per blocking-loop profile")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--endpoints", help=argparse.SUPPRESS)
    parser.add_argument("--nginx-pid", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        worker(arguments)
    else:
        main(arguments)
