"""`saru failover-test` (being written; see the issue tracker)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("failover-test", help="(not yet available)")
    p.set_defaults(func=run)


def run(_args: argparse.Namespace) -> int:
    print("saru failover-test: not yet available", file=sys.stderr)
    return 1
