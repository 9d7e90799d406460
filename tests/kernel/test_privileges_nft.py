"""A root ``saru run`` that drops privileges still programs nftables (CAP_NET_ADMIN kept; nothing
inheritable or ambient, except for the ``nft`` command's own exec when libnftables is not used): the
table after the drop, and a reload that adds a virtual, in ``saru-…`` namespaces (``tests.lab.guide``),
through libnftables and through the ``nft`` command (``SARU_NFT_LIBRARY=""``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.control import request_sync
from saru.daemon.privileges import KEEP, mask
from tests.helpers import proc_status, readable_python, require
from tests.lab.guide import REALS, VIP, Topology

pytestmark = pytest.mark.timeout(120)


CF = """\
checktimeout=2
checkinterval=1
autoreload=no
quiescent=no
{extra}
virtual={vip}:80
\treal={fe1}:80 gate
\treal={fe2}:80 gate
\tchecktype=on
\tscheduler=rr
\tprotocol=tcp
"""


@pytest.fixture
def topo(workdir: Path) -> Iterator[Topology]:
    ok, why = Topology.available()
    require(ok, why)
    with Topology(workdir / "lab") as t:
        yield t


@pytest.mark.parametrize("library", ["libnftables", "nft command"])
def test_dropped_daemon_programs_nftables_and_reloads(topo: Topology, user, workdir: Path,  # type: ignore[no-untyped-def]
                                                      library: str) -> None:
    topo.mode("dr")
    fe1, fe2 = REALS["fe1"][2], REALS["fe2"][2]
    cf = workdir / "ldirectord.cf"
    cf.write_text(CF.format(extra="", vip=VIP, fe1=fe1, fe2=fe2))
    cf.chmod(0o644)
    settings = workdir / "saru.toml"
    settings.write_text(f'[director]\nconfig = "{cf}"\ndataplane = "nft"\nuser = "{user.name}"\n'
                        f'command_user = "{user.name}"\n')
    run = workdir / "run"
    python, pythonpath = readable_python()
    env = {k: v for k, v in topo.environ().items() if k not in ("SARU_DROP_PRIVILEGES", "SARU_COMMAND_USER")}
    env.update(PYTHONPATH=pythonpath, SARU_RUNTIME_DIR=str(run), SARU_STATE_DIR=str(workdir / "state"))
    if library == "nft command":
        env["SARU_NFT_LIBRARY"] = ""
    log = (workdir / "daemon.log").open("w")
    daemon = topo.popen("ld1", python, "-m", "saru", "run", "-c", str(settings), env=env, stdout=log, stderr=log)
    control = run / "ldirectord.cf.sock"

    def services() -> dict[str, set[str]]:
        try:
            answer = request_sync(control, "table", timeout=2)
        except OSError:
            return {}
        return {f"{s['service']['address']}:{s['service']['port']}": {d["address"] for d in s["dests"]}
                for s in answer.get("table", [])}

    def wait_table(expected: dict[str, set[str]]) -> None:
        deadline = time.monotonic() + 20
        while (got := services()) != expected:
            assert daemon.poll() is None, (workdir / "daemon.log").read_text()
            log_text = (workdir / "daemon.log").read_text()
            assert time.monotonic() < deadline, f"table {got}, expected {expected}\n{log_text}"
            time.sleep(0.1)

    try:
        wait_table({f"{VIP}:80": {fe1, fe2}})
        status = proc_status(daemon.pid)
        if status["Uid"].split()[0] == "0":  # ip netns exec's child is the daemon itself (exec)
            raise AssertionError(f"the daemon is still root: {status['Uid']}")
        assert status["Uid"].split() == [str(user.uid)] * 4
        assert status["CapEff"] == f"{mask(KEEP):016x}"
        assert (status["CapInh"], status["CapAmb"]) == ("0" * 16, "0" * 16)
        ruleset = topo.run("ld1", "nft", "list", "ruleset").stdout
        assert VIP in ruleset
        cf.write_text(CF.format(extra=f"virtual={VIP}:8080\n\treal={fe1}:8080 gate\n\tchecktype=on\n",
                                vip=VIP, fe1=fe1, fe2=fe2))
        answer = request_sync(control, "reload", timeout=10)
        assert answer["ok"], answer
        wait_table({f"{VIP}:80": {fe1, fe2}, f"{VIP}:8080": {fe1}})
        assert "8080" in topo.run("ld1", "nft", "list", "ruleset").stdout
        request_sync(control, "stop", timeout=5)
        assert daemon.wait(20) == 0
        assert "saru" not in topo.run("ld1", "nft", "list", "ruleset").stdout  # cleanstop after the drop
        assert "Dropped privileges" in (workdir / "daemon.log").read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
        log.close()
