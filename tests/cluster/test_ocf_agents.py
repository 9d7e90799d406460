"""The OCF agents under ``ocf-tester``: ``ocf:saru:director``, ``ocf:saru:VIPcheck``, and the unmodified
``ocf:heartbeat:ldirectord`` (Debian resource-agents) driving ``saru-ldirectord``.

Everything runs in a throwaway network namespace ``saru-<id>-ocf`` (plus ``saru-<id>-vip``, a host
that answers on a "VIP", joined by a veth pair: a ``tests.lab.Lab``), each command in a fresh private
mount namespace with a tmpfs on ``/run`` (pid files, control sockets, ``HA_RSCTMP``) and an overlay on
``/usr/lib/ocf/resource.d`` into which ``packaging/install-ocf.sh`` installs the agents: the
host's ``/run``, OCF tree and interfaces are never touched. The director programs a real table
(``auto``: IPVS when the kernel has it, else nftables) inside the namespace.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import require
from tests.lab import Lab, can_build

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OCF = "/usr/lib/ocf/resource.d"
HEARTBEAT_LDIRECTORD = f"{OCF}/heartbeat/ldirectord"
SUBNET = "10.251.7"
LAB, VIPHOST, FREE_VIP, BUSY_VIP = f"{SUBNET}.1", f"{SUBNET}.2", f"{SUBNET}.241", f"{SUBNET}.240"

PRELUDE = f"""\
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/.ocf/upper /run/.ocf/work /run/resource-agents
mount -t overlay overlay -o lowerdir={OCF},upperdir=/run/.ocf/upper,workdir=/run/.ocf/work {OCF}
{ROOT}/packaging/install-ocf.sh >/dev/null
export OCF_ROOT=/usr/lib/ocf PATH={BIN}:$PATH
set +e
"""

CONFIG = """\
checktimeout=2
checkinterval=1
logfile="{log}"
virtual={vip}:80
\treal={real}:80 masq 1
\tservice=http
\tscheduler=rr
\tprotocol=tcp
\tchecktype=on
"""


def _missing() -> str | None:
    ok, why = can_build("unshare", "ocf-tester", "xmllint", "ping", what="OCF agent tests (namespaces, mounts)")
    if not ok:
        return why
    if not Path(HEARTBEAT_LDIRECTORD).exists():
        return "resource-agents' ocf:heartbeat:ldirectord is not installed"
    if not (BIN / "saru").exists() or not (BIN / "saru-ldirectord").exists():
        return f"saru and saru-ldirectord are not installed in {BIN}"
    return None


@dataclass
class AgentLab:
    ns: str
    peer: str
    workdir: Path
    config: Path

    def run(self, script: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``script`` (sh) in the lab namespace, in a fresh private mount namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.ns, "unshare", "--mount", "--propagation", "private",
             "sh", "-c", PRELUDE + script],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )

    def ocf_tester(self, agent: str, instance: str, **params: str) -> subprocess.CompletedProcess[str]:
        options = " ".join(f"-o {shlex.quote(f'{k}={v}')}" for k, v in params.items())
        return self.run(f"ocf-tester -n {instance} {options} {agent}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentLab]:
    missing = _missing()
    require(missing is None, missing or "")
    workdir = tmp_path_factory.mktemp("ocf")
    workdir.chmod(0o755)
    with Lab(("ocf", "vip"), tag="o") as net:
        net.veth("ocf", "ocf0", "vip", "ocf1")
        net.add_address("ocf", f"{LAB}/24", interface="ocf0")
        net.add_address("vip", f"{VIPHOST}/24", f"{BUSY_VIP}/24", interface="ocf1")
        net.ip("ocf", "link", "set", "ocf0", "up")
        net.ip("vip", "link", "set", "ocf1", "up")
        config = workdir / f"saru-ocf-{os.getpid()}.cf"
        config.write_text(CONFIG.format(log=workdir / "ldirectord.log", vip=LAB, real=VIPHOST))
        yield AgentLab(ns=net["ocf"].netns, peer=net["vip"].netns, workdir=workdir, config=config)


def _passed(result: subprocess.CompletedProcess[str], agent: str) -> None:
    assert result.returncode == 0 and f"{agent} passed all tests" in result.stdout, (
        f"rc={result.returncode}\n{result.stdout}\n{result.stderr}")


def test_director_agent_passes_ocf_tester(lab: AgentLab) -> None:
    agent = f"{OCF}/saru/director"
    _passed(lab.ocf_tester(agent, "dir1", config=str(lab.config), binary=str(BIN / "saru")), agent)
    log = (lab.workdir / "ldirectord.log").read_text()
    assert f"Added virtual server: {LAB}:80" in log and f"Purged virtual server: {LAB}:80" in log


def test_unmodified_heartbeat_ldirectord_agent_drives_saru_ldirectord(lab: AgentLab) -> None:
    if shutil.which("dpkg"):  # the agent is resource-agents' own file, byte for byte
        verify = subprocess.run(["dpkg", "-V", "resource-agents"], capture_output=True, text=True)
        assert HEARTBEAT_LDIRECTORD not in verify.stdout, verify.stdout
    log = lab.workdir / "ldirectord.log"
    before = log.read_text() if log.exists() else ""
    result = lab.ocf_tester(HEARTBEAT_LDIRECTORD, "ld1", configfile=str(lab.config),
                            ldirectord=str(BIN / "saru-ldirectord"))
    _passed(result, HEARTBEAT_LDIRECTORD)
    new = log.read_text()[len(before):]  # ocf-tester started and stopped it twice: tables made and purged
    assert new.count(f"Added virtual server: {LAB}:80") == 2 and new.count(f"Purged virtual server: {LAB}:80") == 2


def test_vipcheck_agent_passes_ocf_tester(lab: AgentLab) -> None:
    agent = f"{OCF}/saru/VIPcheck"
    _passed(lab.ocf_tester(agent, "vc1", target_ip=f"{FREE_VIP}%ocf0", wait="1"), agent)


def test_vipcheck_refuses_to_start_while_the_vip_answers(lab: AgentLab) -> None:
    agent = f"{OCF}/saru/VIPcheck"
    script = f"""
export OCF_RESOURCE_INSTANCE=vc2 OCF_RESKEY_wait=1 __OCF_ACTION
for target in {BUSY_VIP} {FREE_VIP},{BUSY_VIP}%ocf0 {FREE_VIP}; do
    export OCF_RESKEY_target_ip=$target
    __OCF_ACTION=start; {agent} start; echo "$target start=$?"
    __OCF_ACTION=monitor; {agent} monitor; echo "$target monitor=$?"
done
__OCF_ACTION=stop; {agent} stop; echo "stop=$?"
__OCF_ACTION=monitor; {agent} monitor; echo "monitor=$?"
export OCF_RESKEY_target_ip=%ocf0
__OCF_ACTION=validate-all; {agent} validate-all; echo "validate=$?"
"""
    began = time.monotonic()
    result = lab.run(script)
    lines = [line for line in result.stdout.splitlines() if "=" in line]
    assert lines == [
        f"{BUSY_VIP} start=1", f"{BUSY_VIP} monitor=7",  # the VIP answers: OCF_ERR_GENERIC, not started
        f"{FREE_VIP},{BUSY_VIP}%ocf0 start=1", f"{FREE_VIP},{BUSY_VIP}%ocf0 monitor=7",
        f"{FREE_VIP} start=0", f"{FREE_VIP} monitor=0",
        "stop=0", "monitor=7",
        "validate=6",  # an interface without an address: OCF_ERR_CONFIGURED
    ], result.stdout + result.stderr
    assert "answers ping: another node still holds it" in result.stderr
    assert time.monotonic() - began < 20


def test_director_agent_config_errors_and_reload(lab: AgentLab) -> None:
    agent = f"{OCF}/saru/director"
    broken = lab.workdir / "broken.cf"
    broken.write_text(lab.config.read_text() + "\tbogus=1\n")
    script = f"""
export OCF_RESOURCE_INSTANCE=dir2 OCF_RESKEY_binary={BIN}/saru __OCF_ACTION
act() {{ __OCF_ACTION=$1; {agent} $1 >/dev/null 2>&1; echo "$1=$?"; }}
OCF_RESKEY_config={broken}; export OCF_RESKEY_config
act validate-all
act start
act monitor
OCF_RESKEY_config={lab.config}
act start
act reload
echo "plane=$(saru status -c {lab.config} --json | grep -o '"name": "[a-z]*"' | head -1)"
OCF_RESKEY_dataplane=proxy; export OCF_RESKEY_dataplane
act reload
echo "plane=$(saru status -c {lab.config} --json | grep -o '"name": "[a-z]*"' | head -1)"
act monitor
act stop
act monitor
"""
    result = lab.run(script)
    lines = [line for line in result.stdout.splitlines() if "=" in line]
    plane = [line for line in lines if line.startswith("plane=")]
    assert [line for line in lines if not line.startswith("plane=")] == [
        "validate-all=6", "start=6", "monitor=7",  # broken config: OCF_ERR_CONFIGURED, nothing runs
        "start=0", "reload=0",
        "reload=0",  # dataplane changed: the director was restarted on the proxy
        "monitor=0", "stop=0", "monitor=7",
    ], result.stdout + result.stderr
    assert plane[0] != 'plane="name": "proxy"' and plane[1] == 'plane="name": "proxy"', plane


def test_vipcheck_agent_arp_method_uses_saru_vipcheck(lab: AgentLab) -> None:
    """``method=arp``: the ARP probe finds the holder by its MAC (even one that would drop ICMP)."""
    agent = f"{OCF}/saru/VIPcheck"
    script = f"""
export OCF_RESOURCE_INSTANCE=vc3 OCF_RESKEY_wait=1 OCF_RESKEY_method=arp OCF_RESKEY_binary={BIN}/saru __OCF_ACTION
for target in {BUSY_VIP}%ocf0 {FREE_VIP}%ocf0; do
    export OCF_RESKEY_target_ip=$target
    __OCF_ACTION=start; {agent} start; echo "$target start=$?"
    __OCF_ACTION=stop; {agent} stop >/dev/null
done
export OCF_RESKEY_target_ip={FREE_VIP}
__OCF_ACTION=validate-all; {agent} validate-all; echo "no interface validate=$?"
OCF_RESKEY_method=telepathy OCF_RESKEY_target_ip={FREE_VIP}%ocf0 {agent} validate-all; echo "bad method validate=$?"
"""
    result = lab.run(script)
    lines = [line for line in result.stdout.splitlines() if "=" in line]
    assert lines == [f"{BUSY_VIP}%ocf0 start=1", f"{FREE_VIP}%ocf0 start=0",
                     "no interface validate=6", "bad method validate=6"], result.stdout + result.stderr
    assert f"{BUSY_VIP} answered by " in result.stderr and "another node still holds it" in result.stderr
