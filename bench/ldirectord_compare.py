"""Detection latency: Saru next to the original Perl ldirectord (fork=no and fork=yes), on loopback.

Same ldirectord.cf for every director: N reals spread over V virtuals, ``negotiate`` http checks of
``/check.html`` against real nginx on 127.150.x.y, ``checkinterval=1``, ``negotiatetimeout=2``,
``quiescent=no``; a fraction of the reals hung (listeners whose handshakes complete in the kernel and that
never answer). Each director runs in the foreground as a separate process group:

* Saru: ``python -m saru run -c <cf> --dataplane proxy`` (the proxy binds the virtuals on 127.153.0.x);
* the original: ``ldirectord -d <cf> start`` in a work directory holding ``./ipvsadm``, a stateful
  stand-in (``bench/ldirectord/ipvsadm``) — this kernel has no IPVS, and ``-d`` makes ldirectord use
  ``./ipvsadm`` when present and log to stderr.

Once every director has added every healthy real, the victims (healthy reals at random places in the
reals' order, one nginx each) fail together at a random moment: half are stopped (SIGKILL: connection
refused), half frozen (SIGSTOP: the kernel still accepts, nobody answers). Detection latency is the time
from the failure to the director's ``Deleted real server: <rip:port>`` line — the same words in both.
ldirectord's debug lines also give its check period (time between two checks of the same real), the
floor of its worst-case detection. By default the three directors watch the same backends at the same
time (one failure is timed by all three), which keeps the run short; ``--sequential`` runs them one after
the other. Prints a table and writes ``bench/results/ldirectord_compare.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from checks_bench import Hung, NginxGroup, raise_fd_limit  # noqa: E402

RESULTS = BENCH / "results" / "ldirectord_compare.json"
STUB = BENCH / "ldirectord" / "ipvsadm"
LDIRECTORD = shutil.which("ldirectord") or "/usr/sbin/ldirectord"
# loopback blocks of this benchmark (checks_bench.py uses 100-141)
HEALTHY_BLOCK, HUNG_BLOCK, VICTIM_BLOCK, VIRTUAL_BLOCK = 150, 151, 152, 153
LINE = re.compile(r"\b(Added|Deleted) real server: (\d+\.\d+\.\d+\.\d+:\d+)")
# ldirectord's debug line before each check: "Checking negotiate: real server=negotiate:http:tcp:RIP:PORT:…"
CHECKING = re.compile(r"Checking \w+: real server=[^:]*:[^:]*:[^:]*:(\d+\.\d+\.\d+\.\d+:\d+):")


@dataclass(frozen=True)
class Scenario:
    """One table row: N reals over V virtuals, some hung, some victims (healthy until stopped)."""

    reals: int
    hung_fraction: float
    virtuals: int
    victims: int
    rounds: int

    @property
    def hung(self) -> int:
        return round(self.reals * self.hung_fraction)

    @property
    def label(self) -> str:
        return f"{self.reals} reals / {self.hung_fraction:.0%} hung"


def endpoints(block: int, count: int, port: int) -> list[tuple[str, int]]:
    return [(f"127.{block}.{i // 250}.{i % 250 + 1}", port) for i in range(count)]


def config_text(virtuals: Sequence[tuple[str, int, Sequence[tuple[str, int]]]], interval: int, timeout: int,
                fork: bool) -> str:
    """An ldirectord.cf both directors read unchanged."""
    lines = [f"checkinterval={interval}", f"negotiatetimeout={timeout}", f"checktimeout={timeout}",
             "quiescent=no", "autoreload=no", f"fork={'yes' if fork else 'no'}", ""]
    for vip, vport, reals in virtuals:
        lines.append(f"virtual={vip}:{vport}")
        lines += [f"\treal={a}:{p} masq" for a, p in reals]
        lines += ["\tservice=http", "\tchecktype=negotiate", '\trequest="check.html"', '\treceive="OK alive"',
                  "\tscheduler=rr", "\tprotocol=tcp", ""]
    return "\n".join(lines)


@dataclass
class Director:
    """A director process whose stderr is parsed for Added/Deleted real server lines."""

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    present: dict[str, float] = field(default_factory=dict)  # rip:port -> when last added
    deletions: list[tuple[float, str]] = field(default_factory=list)
    check_starts: dict[str, list[float]] = field(default_factory=dict)  # ldirectord only (debug lines)
    tail: list[str] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        with open(self.cwd / f"{self.name}.stdout", "wb") as out:
            self.process = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=out,
                                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        with open(self.cwd / f"{self.name}.stderr", "w") as log:
            for raw in self.process.stderr:
                now = time.monotonic()
                text = raw.decode(errors="replace").rstrip("\n")
                log.write(f"{now:.3f} {text}\n")
                match = LINE.search(text)
                checking = CHECKING.search(text)
                with self.cond:
                    if checking:
                        self.check_starts.setdefault(checking.group(1), []).append(now)
                    self.tail = [*self.tail, text][-20:]
                    if match and match.group(1) == "Added":
                        self.present[match.group(2)] = now
                    elif match:
                        self.present.pop(match.group(2), None)
                        self.deletions.append((now, match.group(2)))
                    self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def deleted_since(self, key: str, since: float) -> float | None:
        return next((t for t, k in self.deletions if k == key and t >= since), None)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_for(self, predicate: object, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():  # type: ignore[operator]
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive():
                    return bool(predicate())  # type: ignore[operator]
                self.cond.wait(min(left, 0.5))
        return True

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # fork=yes children, ipvsadm stubs
        except ProcessLookupError:
            pass
        self.process.wait()


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def make_directors(kinds: Sequence[str], work: Path, cf_base: str, text_nofork: str, text_fork: str,
                   tag: str) -> list[Director]:
    directors = []
    for kind in kinds:
        d = work / kind
        d.mkdir(parents=True, exist_ok=True)
        if kind == "saru":
            cf = d / f"{cf_base}.cf"
            cf.write_text(text_nofork)
            argv = [sys.executable, "-m", "saru", "run", "-c", str(cf), "--dataplane", "proxy",
                    "--control", str(d / "control.sock")]
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            directors.append(Director(kind, argv, d, env))
        else:
            fork = kind == "ldirectord-fork"
            # the pid file is /var/run/ldirectord.<cf name>.pid: a unique name per run
            cf = d / f"{cf_base}-{tag}-{'fork' if fork else 'nofork'}.cf"
            cf.write_text(text_fork if fork else text_nofork)
            (d / "ipvsadm").symlink_to(STUB)
            env = {**os.environ, "IPVSADM_STUB_STATE": str(d / "ipvs_state.json"),
                   "IPVSADM_STUB_LOG": str(d / "ipvsadm.log")}
            directors.append(Director(kind, [LDIRECTORD, "-d", str(cf), "start"], d, env))
    return directors


def run_scenario(scn: Scenario, kinds: Sequence[str], work: Path, interval: int, timeout: int,
                 seed: int) -> dict[str, object]:
    """Start backends and directors, stop the victims one by one; latencies per director."""
    port = 20000 + random.Random().randrange(5000)
    healthy_n = scn.reals - scn.hung - scn.victims
    healthy = endpoints(HEALTHY_BLOCK, healthy_n, port)
    hung = endpoints(HUNG_BLOCK, scn.hung, port)
    victims = endpoints(VICTIM_BLOCK, scn.victims, port)
    reals = healthy + hung + victims
    random.Random(seed).shuffle(reals)
    per = -(-len(reals) // scn.virtuals)
    virtuals = [(f"127.{VIRTUAL_BLOCK}.0.{k + 1}", port, reals[k * per:(k + 1) * per])
                for k in range(scn.virtuals)]
    tag = f"{os.getpid()}-{scn.reals}-{round(scn.hung_fraction * 100)}"
    text_nofork = config_text(virtuals, interval, timeout, fork=False)
    text_fork = config_text(virtuals, interval, timeout, fork=True)

    groups: list[NginxGroup] = []
    hung_servers: list[Hung] = []
    directors: list[Director] = []
    latencies: dict[str, list[float | None]] = {k: [] for k in kinds}
    startup: dict[str, float | None] = {}
    cpu: dict[str, float] = {}
    modes: dict[str, dict[str, list[float | None]]] = {k: {} for k in kinds}
    periods: dict[str, dict[str, float] | None] = {}
    ipvsadm_calls: dict[str, int] = {}
    try:
        if healthy:
            groups.append(NginxGroup(work / "nginx-healthy", healthy))
        victim_groups = [NginxGroup(work / f"nginx-victim-{i}", [ep]) for i, ep in enumerate(victims)]
        groups += victim_groups
        for group in groups:
            group.start()

        hung_servers = [Hung(a, p) for a, p in hung]

        directors = make_directors(kinds, work, "bench", text_nofork, text_fork, tag)
        want = {f"{a}:{p}" for a, p in healthy + victims}
        started = time.monotonic()
        for d in directors:
            d.start()
        # the original's first pass is as slow as any other: allow for the hung reals' timeouts
        ready_budget = 30 + scn.hung * timeout * 1.5 + scn.reals * 0.5
        for d in directors:
            ok = d.wait_for(lambda d=d: want <= set(d.present), ready_budget - (time.monotonic() - started))
            if not ok:
                raise RuntimeError(f"{d.name} did not add every healthy real "
                                   f"({len(want & set(d.present))}/{len(want)}); last lines: {d.tail[-5:]}")
            startup[d.name] = round(max(d.present[k] for k in want) - started, 2)
        keys = [f"{a}:{p}" for a, p in victims]
        rng = random.Random(seed + 1)
        budget = 30 + scn.hung * timeout * 1.5 + scn.reals * 0.2
        for round_ in range(scn.rounds):
            if round_:
                recover(victim_groups)
                for d in directors:
                    if not d.wait_for(lambda d=d: all(k in d.present for k in keys), budget):
                        raise RuntimeError(f"{d.name} did not add the recovered victims back")
            fail_victims(scn, directors, victim_groups, keys, rng, interval, budget, latencies, modes)
        for d in directors:
            periods[d.name] = check_periods(d)
            print(f"    {d.name}: latencies {latencies[d.name]}, check period {periods[d.name]}", flush=True)
        for d in directors:
            cpu[d.name] = round(sum(cpu_of(pid) for pid in group_pids(d)), 2)
            log = d.cwd / "ipvsadm.log"
            if log.exists():
                ipvsadm_calls[d.name] = sum(1 for _ in log.open())
    finally:
        for d in directors:
            d.stop()
        for group in groups:
            group.stop()
        for server in hung_servers:
            server.close()
        for d in directors:
            if d.name != "saru":
                Path(f"/var/run/ldirectord.{Path(d.argv[2]).name}.pid").unlink(missing_ok=True)
    return {"reals": scn.reals, "hung": scn.hung, "hung_fraction": scn.hung_fraction,
            "virtuals": scn.virtuals, "rounds": scn.rounds, "startup_seconds": startup,
            "cpu_seconds_process_group": cpu, "ipvsadm_stub_calls": ipvsadm_calls,
            "latency": {k: summarize(v) for k, v in latencies.items()},
            "latency_by_victim_mode": {k: {m: summarize(v) for m, v in by.items()}
                                       for k, by in modes.items()},
            "check_period_seconds": periods}


def fail_victims(scn: Scenario, directors: Sequence[Director], victim_groups: Sequence[NginxGroup],
                 keys: Sequence[str], rng: random.Random, interval: int, budget: float,
                 latencies: dict[str, list[float | None]],
                 modes: dict[str, dict[str, list[float | None]]]) -> None:
    """Fail every victim at once at a random moment; append each director's detection latencies."""
    # the victims sit at random places in the reals' order: each samples "a real fails at a random time"
    time.sleep(rng.uniform(interval, 2 * interval))
    stopped = time.monotonic()
    for i, group in enumerate(victim_groups):
        if i % 2:
            group.signal(signal.SIGSTOP)  # frozen: the kernel still accepts, nobody answers
        else:
            group.signal(signal.SIGKILL)  # stopped: connection refused
    for d in directors:
        d.wait_for(lambda d=d: all(d.deleted_since(k, stopped) is not None for k in keys),
                   budget - (time.monotonic() - stopped))
        for i, key in enumerate(keys):
            when = d.deleted_since(key, stopped)
            latency = round(when - stopped, 3) if when is not None else None
            latencies[d.name].append(latency)
            modes[d.name].setdefault("freeze" if i % 2 else "stop", []).append(latency)


def recover(victim_groups: Sequence[NginxGroup]) -> None:
    for i, group in enumerate(victim_groups):
        if i % 2:
            group.signal(signal.SIGCONT)
        else:
            group.stop()  # reap the killed nginx
            group.start()


def check_periods(d: Director) -> dict[str, float] | None:
    """Time between two checks of the same real, from ldirectord's debug lines (first pass excluded)."""
    with d.cond:
        gaps = [b - a for starts in d.check_starts.values() for a, b in itertools.pairwise(starts[1:])]
    if not gaps:
        return None
    return {"mean": round(statistics.mean(gaps), 2), "max": round(max(gaps), 2), "samples": len(gaps)}


def group_pids(d: Director) -> list[int]:
    if d.process is None:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == d.process.pid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def summarize(samples: list[float | None]) -> dict[str, object]:
    got = [s for s in samples if s is not None]
    return {"samples": samples, "missed": len(samples) - len(got),
            "mean": round(statistics.mean(got), 2) if got else None,
            "max": round(max(got), 2) if got else None}


def check_loopback_free(port_probe: str = "127.153.0.1") -> None:
    with socket.socket() as s:
        s.bind((port_probe, 0))


def table(rows: list[dict[str, object]], kinds: Sequence[str], bound: float) -> str:
    heads = {"saru": "Saru", "ldirectord-nofork": "ldirectord fork=no",
             "ldirectord-fork": "ldirectord fork=yes"}
    width = 24
    out = [f"{'reals / hung':<22}" + "".join(f"{heads[k]:>{width}}" for k in kinds) + f"{'bound i+t':>12}"
           + f"{'fork=no period':>18}",
           f"{'':<22}" + "".join(f"{'mean / max (s)':>{width}}" for _ in kinds) + f"{'(s)':>12}"
           + f"{'mean / max (s)':>18}"]
    out.append("-" * len(out[0]))
    for row in rows:
        cells = []
        for k in kinds:
            lat = row["latency"][k]  # type: ignore[index]
            text = "n/a" if lat["mean"] is None else f"{lat['mean']:.2f} / {lat['max']:.2f}"
            if lat["missed"]:
                text += f" ({lat['missed']} missed)"
            cells.append(f"{text:>{width}}")
        label = f"{row['reals']} / {row['hung']} ({row['hung_fraction']:.0%})"
        period = row["check_period_seconds"].get("ldirectord-nofork")  # type: ignore[union-attr]
        period_text = "n/a" if not period else f"{period['mean']:.1f} / {period['max']:.1f}"
        out.append(f"{label:<22}" + "".join(cells) + f"{bound:>12.1f}" + f"{period_text:>18}")
    return "\n".join(out)


def main(args: argparse.Namespace) -> dict[str, object]:
    if not Path(LDIRECTORD).exists():
        sys.exit("ldirectord is not installed: apt-get install -y --no-install-recommends ldirectord")
    raise_fd_limit()
    check_loopback_free()
    kinds = ["saru", "ldirectord-nofork", "ldirectord-fork"]
    # the original's pass with 20 hung reals takes ~45 s: one round there, more where it is quick
    scenarios = [Scenario(n, f, args.virtuals, args.victims, rounds) for n, f, rounds in
                 ((50, 0.0, args.rounds), (50, 0.1, args.rounds), (200, 0.1, 1))][: args.rows]
    bound = float(args.interval + args.timeout)
    tolerance = 0.05  # the director's own path from a check's verdict to its log line
    rows = []
    base = Path(tempfile.mkdtemp(prefix="saru-ldcompare-"))
    wall0 = time.monotonic()
    try:
        for i, scn in enumerate(scenarios):
            print(f"{scn.label}, {scn.virtuals} virtuals, interval {args.interval} s, "
                  f"timeout {args.timeout} s, {scn.rounds} round(s) of {scn.victims} victims", flush=True)
            groups = [[k] for k in kinds] if args.sequential else [kinds]
            merged: dict[str, object] = {}
            for j, group in enumerate(groups):
                work = base / f"row{i}-{j}"
                work.mkdir()
                part = run_scenario(scn, group, work, args.interval, args.timeout, seed=100 + i)
                for key, value in part.items():
                    if isinstance(value, dict) and isinstance(merged.get(key), dict):
                        merged[key].update(value)  # type: ignore[union-attr]
                    else:
                        merged[key] = value
            rows.append(merged)
    finally:
        if args.keep:
            print(f"logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    results: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "ldirectord": ldirectord_version(),
        "method": ("directors run " + ("one after the other" if args.sequential
                                       else "side by side on the same backends")
                   + "; latency = failure of a healthy real's nginx (half SIGKILL, half SIGSTOP) -> "
                   "the director's 'Deleted real server' line"),
        "checkinterval": args.interval, "negotiatetimeout": args.timeout, "bound": bound,
        "wall_seconds": round(time.monotonic() - wall0, 1),
        "saru_within_bound": all(row["latency"]["saru"]["max"] is not None  # type: ignore[index]
                                 and row["latency"]["saru"]["max"] <= bound + tolerance  # type: ignore[index]
                                 and not row["latency"]["saru"]["missed"]  # type: ignore[index]
                                 for row in rows),
        "bound_tolerance_seconds": tolerance,
        "rows": rows,
    }
    print()
    print(table(rows, kinds, bound))
    print(f"Saru within interval + timeout (+{tolerance * 1000:.0f} ms): {results['saru_within_bound']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")
    return results


def ldirectord_version() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "ldirectord"],
                         capture_output=True, text=True)
    return f"Debian ldirectord {out.stdout.strip()}" if out.returncode == 0 else "unknown"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=int, default=1, help="checkinterval (s)")
    parser.add_argument("--timeout", type=int, default=2, help="negotiatetimeout (s)")
    parser.add_argument("--virtuals", type=int, default=10)
    parser.add_argument("--victims", type=int, default=6, help="healthy reals failed per row (half frozen)")
    parser.add_argument("--rounds", type=int, default=2, help="fail/recover rounds in the 50-real rows")
    parser.add_argument("--rows", type=int, default=3, help="how many of the rows 50/0%%, 50/10%%, 200/10%%")
    parser.add_argument("--sequential", action="store_true", help="one director at a time (slower)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    main(parser.parse_args())
