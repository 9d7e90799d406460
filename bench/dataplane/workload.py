"""The table changes the update benchmark times, and their one-process-per-change equivalents.

Pure functions only: which ops Saru applies for each phase, which ``ipvsadm`` argv / ``nft`` script
ldirectord-style tooling would run per change, and a fixed CPU workload used to measure how much
slower the emulated (TCG) guest is than the host.
"""

from __future__ import annotations

import time

from saru.model import AddDest, AddService, DelService, Dest, EditDest, Op, ServiceKey, ServiceSettings

SIZES = (1, 100, 10_000)
PHASES = ("add", "weight0", "single")
PHASE_TITLES = {
    "add": "add N reals",
    "weight0": "weight 0 on all N",
    "single": "1 real changed, table of N",
}
REAL_PORT = 8080
NFT_TABLE = "saru_bench_ldirectord"  # the per-process baseline's own table (never Saru's "saru")


def real_address(i: int) -> str:
    """The i-th real (0-based): 10.20.0.1, 10.20.0.2, …, up to 64,000 distinct addresses."""
    return f"10.{20 + i // 250 // 256}.{i // 250 % 256}.{i % 250 + 1}"


def dest(i: int, weight: int = 1) -> Dest:
    return Dest(real_address(i), REAL_PORT, "masq", weight)


def add_ops(key: ServiceKey, n: int) -> list[Op]:
    """One service with ``n`` reals of weight 1 (the service is created in the same apply)."""
    return [AddService(key, ServiceSettings("wrr")), *(AddDest(key, dest(i)) for i in range(n))]


def weight0_ops(key: ServiceKey, n: int) -> list[Op]:
    """Quiesce every real (what a failed health check of a whole farm does)."""
    return [EditDest(key, dest(i, 0)) for i in range(n)]


def single_ops(key: ServiceKey) -> list[Op]:
    """One real back to weight 1 (one health check recovered) on an otherwise quiesced table."""
    return [EditDest(key, dest(0, 1))]


def delete_ops(key: ServiceKey) -> list[Op]:
    return [DelService(key)]


# -- the original ldirectord's way: one process per change ------------------------------------------


def ipvsadm_service(vip: str, port: int) -> list[str]:
    return ["ipvsadm", "-A", "-t", f"{vip}:{port}", "-s", "wrr"]


def ipvsadm_real(vip: str, port: int, i: int, weight: int, edit: bool = False) -> list[str]:
    """``ipvsadm -a`` (or ``-e``) for the i-th real, as ldirectord's ld_add_real/ld_edit_real run it."""
    return ["ipvsadm", "-e" if edit else "-a", "-t", f"{vip}:{port}", "-r", f"{real_address(i)}:{REAL_PORT}",
            "-m", "-w", str(weight)]


def ipvsadm_restore(vip: str, port: int, indices: range) -> str:
    """``ipvsadm -R`` input adding many reals at once (used only to fill a table, never timed)."""
    return "".join(f"-a -t {vip}:{port} -r {real_address(i)}:{REAL_PORT} -m -w 1\n" for i in indices)


def nft_setup() -> str:
    """A table with one map real → weight: the smallest nftables structure a per-change tool would edit."""
    return (f"add table inet {NFT_TABLE}\n"
            f"add map inet {NFT_TABLE} reals {{ type ipv4_addr . inet_service : mark; }}\n")


def nft_teardown() -> str:
    return f"delete table inet {NFT_TABLE}\n"


def _element(i: int, weight: int) -> str:
    return f"{real_address(i)} . {REAL_PORT} : {weight}"


def nft_add(i: int) -> list[str]:
    """``nft add element`` of one real (argv, one process)."""
    return ["nft", "add", "element", "inet", NFT_TABLE, "reals", f"{{ {_element(i, 1)} }}"]


def nft_set_weight(i: int, weight: int) -> str:
    """An ``nft -f -`` script changing one real's weight (map values cannot be updated in place)."""
    return (f"delete element inet {NFT_TABLE} reals {{ {real_address(i)} . {REAL_PORT} }}\n"
            f"add element inet {NFT_TABLE} reals {{ {_element(i, weight)} }}\n")


def nft_fill(indices: range) -> str:
    """One script adding many reals (used only to fill a table, never timed)."""
    lines = []
    chunk: list[str] = []
    for i in indices:
        chunk.append(_element(i, 1))
        if len(chunk) == 1000:
            lines.append(f"add element inet {NFT_TABLE} reals {{ {', '.join(chunk)} }}\n")
            chunk = []
    if chunk:
        lines.append(f"add element inet {NFT_TABLE} reals {{ {', '.join(chunk)} }}\n")
    return "".join(lines)


# -- slowdown of the emulated guest ----------------------------------------------------------------------


def _cpu_work() -> int:
    total = 0
    table: dict[int, int] = {}
    for i in range(200_000):
        table[i & 1023] = table.get(i & 1023, 0) + i
        total += len(str(i))
    return total + len(table)


def cpu_probe(rounds: int = 3) -> float:
    """Best-of-``rounds`` seconds of a fixed pure-Python workload (compare host and guest)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        _cpu_work()
        best = min(best, time.perf_counter() - t0)
    return best

