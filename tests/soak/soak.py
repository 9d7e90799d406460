"""The soak: 10,000 reals, 1 % of them flapping, checks every second, for a bounded time.

Everything runs in one network namespace ``saru-…`` (a ``Lab`` with one host): two real nginx
processes (one on port 80, one on 81, each on the wildcard address, so every 127.x.y.z of the
namespace's loopback reaches one of them), ``saru run --dataplane proxy`` with 100 virtuals of 100
reals each (127.1.v.r), TCP connect checks every second (timeout 1 s), ``quiescent=no``. The flapping
1 % (100 reals, one per virtual) are refused by an nftables rule of the namespace (``tcp reset`` to the
addresses in a set) 5 s out of every 10: their checks fail, they leave the table, they come back.

Every ``sample`` seconds the daemon's ``runtime`` (resident memory, open descriptors, asyncio tasks,
the journal's and the transition history's sizes, data-plane applies) is printed. At the end the
flapping stops and the table must come back to every real of the config, with no drift found.
``check(samples)`` says what grew more than the tolerances after the warm-up (the first sample after
``warmup`` seconds is the reference).

    sudo .venv/bin/python -m tests.soak.soak --minutes 15      # make soak
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saru.control import request_sync
from saru.daemon.transitions import KEEP as TRANSITIONS_PER_REAL
from tests.helpers import NGINX_CONF
from tests.lab import Lab, wait_for

VIRTUALS = 100
REALS_PER_VIRTUAL = 100
FLAP_PERIOD = 10.0  # seconds: refused for half of it
#: growth tolerated after the warm-up, and why: memory may still settle (allocator arenas, caches of
#: the check loop), descriptors and tasks are per check in flight (one per real at most)
RSS_TOLERANCE = 0.15  # of the warm-up value, and at least RSS_FLOOR
RSS_FLOOR = 16 * 1024 * 1024
FD_TOLERANCE = 200
TASK_TOLERANCE = 200
JOURNAL_MAX = 200  # the journal keeps the last 200 events

NGINX_SERVER = ("    server {{\n        listen {port} default_server reuseport backlog=4096;\n"
                "        return 200 'ok';\n    }}")


def real(v: int, r: int) -> str:
    return f"127.1.{v}.{r + 1}"


def config_text() -> str:
    lines = ["checktimeout=1", "checkinterval=1", "autoreload=no", "quiescent=no", ""]
    for v in range(VIRTUALS):
        lines.append(f"virtual=127.2.0.{v + 1}:8000")
        lines += [f"\treal={real(v, r)}:{80 + r % 2} masq" for r in range(REALS_PER_VIRTUAL)]
        lines += ["\tservice=http", "\tscheduler=rr", "\tprotocol=tcp", "\tchecktype=connect", ""]
    return "\n".join(lines)


def flapping() -> list[str]:
    """One real per virtual: 1 %."""
    return [real(v, 7) for v in range(VIRTUALS)]


@dataclass
class Sample:
    at: float
    doc: dict[str, Any]

    def line(self) -> str:
        d = self.doc
        return (f"t={self.at:6.0f}s rss={d['rss_bytes'] / 1048576:7.1f}MiB fds={d['open_fds']:5d} "
                f"tasks={d['tasks']:5d} journal={d['journal_events']:4d} transitions={d['transitions']:6d} "
                f"({d['transition_reals']} reals) realstats={d['realstats']:6d} applies={d['applies']} "
                f"checks={d['check_results']}")


class SoakLab(Lab):
    roles = ("soak",)
    tag = "soak"


@contextmanager
def soak_bed(workdir: Path) -> Iterator[tuple[SoakLab, Path]]:
    """The namespace with nginx, the flap rule's table and ``saru run``; yields the lab and the control socket."""
    with SoakLab() as lab:
        host = lab["soak"]
        for port in (80, 81):
            d = workdir / f"nginx{port}"
            (d / "tmp").mkdir(parents=True)
            conf = NGINX_CONF.format(user="user root;", dir=d, servers=NGINX_SERVER.format(port=port))
            (d / "nginx.conf").write_text(conf.replace("worker_connections 4096", "worker_connections 20000"))
            host.popen("nginx", "-c", str(d / "nginx.conf"), "-e", str(d / "error.log"),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        host.nft("add table ip soak\n"
                 "add set ip soak flapping { type ipv4_addr; }\n"
                 "add chain ip soak out { type filter hook output priority 0; }\n"
                 "add rule ip soak out ip daddr @flapping tcp dport { 80, 81 } reject with tcp reset\n")
        cf = workdir / "ldirectord.cf"
        cf.write_text(config_text())
        control = workdir / "saru.sock"
        host.popen(sys.executable, "-m", "saru", "run", "-c", str(cf),
                   "--dataplane", "proxy", "--no-drop", "--control", str(control),
                   stdout=(workdir / "saru.out").open("w"), stderr=subprocess.STDOUT)
        yield lab, control


def ask(control: Path, command: str) -> dict[str, Any]:
    answer = request_sync(control, command, timeout=120)
    if not answer.get("ok"):
        raise RuntimeError(f"{command}: {answer.get('error')}")
    return answer


def table_reals(doc: dict[str, Any]) -> int:
    return sum(len(service["dests"]) for service in doc["table"])


def all_reals_in(control: Path) -> bool:
    doc = ask(control, "table")
    return table_reals(doc) == VIRTUALS * REALS_PER_VIRTUAL and all(h["up"] for h in doc["health"])


def run(minutes: float, sample: float = 60.0, workdir: Path | None = None, out: Any = sys.stdout) -> dict[str, Any]:
    """Soak for ``minutes``; the samples, the end state and ``check``'s complaints."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="saru-soak-") as tmp, soak_bed(workdir or Path(tmp)) as (lab, control):
        wait_for(lambda: all_reals_in(control), 120, "every real checked up and in the table", interval=0.5,
                 tolerate=(OSError, RuntimeError, KeyError))
        start = time.monotonic()
        samples: list[Sample] = []
        down = False
        next_flip = start
        next_sample = start
        end = start + minutes * 60
        while True:
            now = time.monotonic()
            if now >= next_flip:
                op = "delete" if down else "add"
                lab["soak"].nft(f"{op} element ip soak flapping {{ {', '.join(flapping())} }}\n")
                down = not down
                next_flip += FLAP_PERIOD / 2
            if now >= next_sample:
                samples.append(Sample(now - start, ask(control, "runtime")))
                print(samples[-1].line(), file=out, flush=True)
                next_sample += sample
                if now >= end:
                    break
            time.sleep(max(0.0, min(next_flip, next_sample) - time.monotonic()))  # the soak's own clock
        if down:
            lab["soak"].nft(f"delete element ip soak flapping {{ {', '.join(flapping())} }}\n")
        wait_for(lambda: all_reals_in(control), 180, "every real back in the table after the flapping stopped",
                 interval=0.5, tolerate=(OSError, RuntimeError, KeyError))
        final = ask(control, "table")
        status = ask(control, "status")
        result = {"minutes": minutes, "samples": [{"t": s.at, **s.doc} for s in samples],
                  "table_reals": table_reals(final), "drift": final.get("drift"),
                  "drift_status": status.get("drift"), "apply_error": status.get("apply_error"),
                  "loadavg": Path("/proc/loadavg").read_text().strip()}
        span = samples[-1].at - samples[0].at
        result["check_rate"] = round((samples[-1].doc["check_results"] - samples[0].doc["check_results"]) / span
                                     if span > 0 else 0.0, 1)
        result["problems"] = check(samples, sample)
        return result


def check(samples: list[Sample], sample: float, warmup: float = 60.0) -> list[str]:
    """What grew beyond the tolerances between the first sample at/after ``warmup`` and the last."""
    after = [s for s in samples if s.at >= min(warmup, samples[-1].at)]
    if len(after) < 2:
        return [f"too few samples after the warm-up ({len(after)})"]
    ref, last = after[0].doc, after[-1].doc
    problems = []
    rss_limit = ref["rss_bytes"] + max(RSS_FLOOR, ref["rss_bytes"] * RSS_TOLERANCE)
    if last["rss_bytes"] > rss_limit:
        problems.append(f"resident memory grew {ref['rss_bytes']} -> {last['rss_bytes']} bytes")
    for key, tolerance in (("open_fds", FD_TOLERANCE), ("tasks", TASK_TOLERANCE)):
        if max(s.doc[key] for s in after) > ref[key] + tolerance:
            problems.append(f"{key} grew {ref[key]} -> {max(s.doc[key] for s in after)}")
    if max(s.doc["journal_events"] for s in samples) > JOURNAL_MAX:
        problems.append("the journal holds more than its 200 events")
    bound = VIRTUALS * REALS_PER_VIRTUAL * TRANSITIONS_PER_REAL
    if max(s.doc["transitions"] for s in samples) > bound:
        problems.append(f"the transition history holds more than {bound} entries")
    if max(s.doc["realstats"] for s in samples) > VIRTUALS * REALS_PER_VIRTUAL:
        problems.append("per-real statistics for more reals than the config has")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--sample", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    result = run(args.minutes, args.sample)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"checks: {result['check_rate']}/s achieved (configured: one per real per second)")
    print(f"table: {result['table_reals']} reals at the end; drift: {result['drift']}; "
          f"problems: {result['problems'] or 'none'}")
    return 1 if result["problems"] or result["drift"] else 0


if __name__ == "__main__":
    sys.exit(main())
