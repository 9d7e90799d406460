"""A ``/metrics`` scrape's work in the process, stage by stage, for 10,000 reals while they are checked:
what the check-plane windows of ``bench/api_bench.py`` measure, without their noise.

The daemon's pieces, no HTTP: the config of ``api_bench`` (100 virtual services of 100 reals, HTTP
checks), the real statistics (``RealStats``) fed check results, the rows kept between scrapes
(``LiveServers``), the exporter (``Exporter``) and the gzip answer (``Gzipped``). Between two scrapes a
second passes and 2,000 reals get a result (the 2,000 checks a second of ``api_bench``'s check daemon),
either a fifth of the reals in turn ("spread") or all 10,000 every fifth scrape ("passes": how a daemon
that started with every real checks them); the plane's counters are a new reading every other scrape
(``COUNTERS_MAX_AGE`` = 2 s), in which no counter moved (no traffic: the proxy's reading then holds
the same objects). The heap is frozen after the first scrape and the collector paused
during each, as in the daemon. Each stage's CPU (``time.thread_time``) per scrape, the mean over
``--scrapes`` scrapes; as a baseline in the same run, the whole text compressed at once (zlib level 1,
what a server compressing its answer would do) instead of the kept blocks.

Prints a table and writes ``bench/results/metrics_scrape.json``.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_bench import addresses, config_text  # noqa: E402
from bench.report import load_average, save  # noqa: E402
from saru.api.blocks import Gzipped  # noqa: E402
from saru.api.metrics import Exporter, gc_paused  # noqa: E402
from saru.config.ldirectord import parse_text  # noqa: E402
from saru.daemon.histogram import Histogram  # noqa: E402
from saru.daemon.metrics_live import LiveServers  # noqa: E402
from saru.daemon.metrics_snapshot import MetricsSnapshot, build  # noqa: E402
from saru.daemon.realstats import RealStats  # noqa: E402
from saru.dataplane.base import DestStats, ServiceStats  # noqa: E402
from saru.model import CheckResult, CheckSpec, Config, RealRef, ServiceKey  # noqa: E402
from saru.planner import desired_table, real_ref  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "metrics_scrape.json"
SPEC = CheckSpec("negotiate", "http", "tcp", "127.0.0.1", 80)
CHECKS_PER_SECOND = 2000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counters(config: Config) -> dict[ServiceKey, ServiceStats]:
    """A new reading of the plane's counters (new objects, no connections: as the proxy's)."""
    return {v.key: ServiceStats(dests={(r.address, r.port): DestStats() for r in v.reals}) for v in config.virtuals}


def cpu(work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.thread_time()
    result = work()
    return time.thread_time() - start, result


def run(mode: str, scrapes: int, reals: int) -> dict[str, Any]:
    config = parse_text(config_text(20000, addresses(100, reals, 8080), 100, 5.0), "bench.cf")
    clock = Clock()
    realstats = RealStats(clock)
    refs: list[RealRef] = [real_ref(v, r) for v in config.virtuals for r in v.reals]
    rnd = random.Random(1)

    def check(chosen: list[RealRef]) -> None:
        for ref in chosen:
            realstats.record(ref, SPEC, CheckResult(ok=True, message="HTTP 200 OK", latency=rnd.random() / 100,
                                                    layer="L7"), True)

    check(refs)
    table = desired_table(config, dict.fromkeys(refs, True))
    live, histogram = LiveServers(realstats), Histogram()
    stats = counters(config)

    def snapshot() -> MetricsSnapshot:
        return build(version="1", dataplane="proxy", config=config, table=table, stats=stats, realstats=realstats,
                     rewrite=True, ha=None, reloads_ok=1, reloads_failed=0, last_reload_success=0.0,
                     apply_durations=histogram.snapshot(), kept=live)

    exporter, gzipped = Exporter(), Gzipped()
    for _ in exporter.slices(snapshot()):  # the first scrape writes every line
        pass
    gzipped.answer(exporter.blocks(snapshot()))
    gc.freeze()  # as the daemon settles its heap once ready (saru.daemon.heap)
    stages: dict[str, list[float]] = {"snapshot": [], "text blocks": [], "gzip answer": [],
                                      "baseline: the whole text, zlib level 1": []}
    size = compressed = 0
    per_pass = len(refs) // CHECKS_PER_SECOND
    for k in range(scrapes):
        clock.now += 1.0
        if k % 2 == 0:
            stats = dict(stats)  # a new reading, no counter moved
        if mode == "spread":
            start = (k % per_pass) * CHECKS_PER_SECOND
            check(refs[start:start + CHECKS_PER_SECOND])
        elif k % per_pass == 0:
            check(refs)
        with gc_paused():  # as the handler does
            seconds, snap = cpu(snapshot)
            stages["snapshot"].append(seconds)
            seconds, blocks = cpu(lambda: exporter.blocks(snap))  # noqa: B023
            stages["text blocks"].append(seconds)
            seconds, answer = cpu(lambda: gzipped.answer(blocks))  # noqa: B023
            stages["gzip answer"].append(seconds)
        text = b"".join(b.text for b in blocks)
        seconds, _ = cpu(lambda: zlib.compress(text, 1, wbits=31))  # noqa: B023
        stages["baseline: the whole text, zlib level 1"].append(seconds)
        size, compressed = len(text), len(answer)
    means = {name: round(statistics.mean(values) * 1000, 2) for name, values in stages.items()}
    scrape = means["snapshot"] + means["text blocks"] + means["gzip answer"]
    return {"mode": mode, "scrapes": scrapes, "cpu_ms": means, "scrape_cpu_ms": round(scrape, 2),
            "text_bytes": size, "gzip_bytes": compressed}


def main(args: argparse.Namespace) -> dict[str, Any]:
    load_before = load_average()
    runs = [run(mode, args.scrapes, args.reals) for mode in ("spread", "passes")]
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "loadavg_before": load_before,
                           "loadavg_after": load_average()},
               "reals": args.reals, "checks_per_second": CHECKS_PER_SECOND, "runs": runs}
    print(f"\n{args.reals} reals, {CHECKS_PER_SECOND} results a second, a scrape a second "
          f"(CPU per scrape, mean of {args.scrapes})")
    print(f"{'stage':<44}" + "".join(f"{r['mode']:>12}" for r in runs))
    print("-" * (44 + 12 * len(runs)))
    for name in runs[0]["cpu_ms"]:
        print(f"{name:<44}" + "".join(f"{r['cpu_ms'][name]:>9.2f} ms" for r in runs))
    print(f"{'a scrape (snapshot + blocks + gzip)':<44}" + "".join(f"{r['scrape_cpu_ms']:>9.2f} ms" for r in runs))
    print(f"answer: {runs[0]['text_bytes'] / 1e6:.1f} MB of text, {runs[0]['gzip_bytes'] / 1e6:.2f} MB gzipped")
    save(RESULTS, results, load_before)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reals", type=int, default=10_000, help="reals (a multiple of 100)")
    parser.add_argument("--scrapes", type=int, default=40, help="scrapes measured (a multiple of 5)")
    main(parser.parse_args())
