"""How the config readers scale: ldirectord.cf with N virtual services, saru.toml with N unknown keys.

Each size is parsed in a fresh process (so the peak RSS is that parse's) and timed; the growth from
one size to the next shows whether the cost is linear. Results are printed and written to
``bench/results/config_scale.json``; docs/configuration.md ("Limits") quotes them.

    .venv/bin/python bench/config_scale.py [--virtuals 1000,10000,100000] [--keys 1000,4000,16000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

MEASURE = """
import json, resource, sys, time
from saru.config.diagnostics import ConfigError
kind, path = sys.argv[1], sys.argv[2]
start, cpu = time.perf_counter(), time.process_time()
problems = 0
try:
    if kind == "cf":
        from saru.config.ldirectord import parse_file
        parse_file(path)
    else:
        from saru.config.native import load_settings
        load_settings(path)
except ConfigError as exc:
    problems = len(exc.diagnostics)
print(json.dumps({"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "problems": problems}))
"""


def ldirectord_cf(virtuals: int) -> str:
    lines = ["checktimeout=3", "checkinterval=5", 'logfile="local0"']
    for i in range(virtuals):
        lines += [f"virtual=10.{i // 65536}.{(i // 256) % 256}.{i % 256}:80",
                  f"\treal=192.168.{(i // 250) % 250}.{i % 250 + 1}:80 gate",
                  "\tservice=http", "\tchecktype=connect", "\tscheduler=rr", "\tprotocol=tcp"]
    return "\n".join(lines) + "\n"


def saru_toml(keys: int) -> str:
    top = [f"junk{i} = {i}" for i in range(keys // 2)]
    ha = [f"bogus{i} = {i}" for i in range(keys - keys // 2)]
    return "\n".join([*top, "[ha]", 'interface = "eth0"', 'vips = ["10.0.0.1"]', *ha]) + "\n"


def measure(kind: str, text: str) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=f".{kind}") as fh:
        fh.write(text)
        fh.flush()
        done = subprocess.run([sys.executable, "-c", MEASURE, kind, fh.name], capture_output=True, text=True,
                              check=True, timeout=3600)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--virtuals", default="1000,10000,100000")
    parser.add_argument("--keys", default="1000,4000,16000")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for n in (int(x) for x in args.virtuals.split(",")):
        rows.append({"input": "ldirectord.cf virtuals", "n": n, **measure("cf", ldirectord_cf(n))})
    for n in (int(x) for x in args.keys.split(",")):
        rows.append({"input": "saru.toml unknown keys", "n": n, **measure("toml", saru_toml(n))})
    print(f"{'input':<24} {'n':>8} {'wall s':>8} {'CPU s':>8} {'RSS MB':>8} {'µs/item':>8}")
    for row in rows:
        per_item = row["cpu"] / row["n"] * 1e6
        print(f"{row['input']:<24} {row['n']:>8} {row['wall']:>8.2f} {row['cpu']:>8.2f} {row['rss_mb']:>8.0f} "
              f"{per_item:>8.1f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "config_scale.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
