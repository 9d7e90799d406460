"""``[nft] flowtable``: established conntrack-NAT flows offloaded to a flowtable, on a real kernel.

The host's kernel has no flowtable support (CONFIG_NF_FLOW_TABLE is not set), so this runs in the
QEMU guest (Debian's kernel, tests/vm/test_ipvs_in_vm.py). The director is the guest's root
namespace (the guest has no network card); a client and two reals live in ``saru-ft-…``
namespaces. Each real runs a line echo server (socat) that first says its name, so one long-lived
connection can be driven line by line and seen in conntrack's table with its ``[OFFLOAD]`` flag.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from saru.dataplane.base import DataplaneError
from saru.dataplane.nft import Nft, NftDataplane, NftError
from saru.diff import diff
from saru.model import Dest, Service, ServiceKey, ServiceSettings, Table
from tests.vm.guest.lvs_nat import namespace, port_open, sh, wait_until

VIP = "10.98.1.100"
CLIENT = ("saru-ft-cli", "ft-cli", "10.98.1.2", "10.98.1.1")
REALS = {"rs1": ("saru-ft-rs1", "ft-rs1", "10.98.2.1", "10.98.2.11"),
         "rs2": ("saru-ft-rs2", "ft-rs2", "10.98.3.1", "10.98.3.12")}
DEVICES = ("ft-cli", "ft-rs1", "ft-rs2")
PORT = 9000
KEY = ServiceKey("tcp", VIP, PORT)


class Echo:
    """One client connection to the VIP, kept open: each line sent comes back from the real."""

    def __init__(self, address: str = VIP) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", CLIENT[0], "socat", "-t", "5", "-", f"TCP:{address}:{PORT}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.server = self._line()  # the real says its name first

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def ask(self, text: str) -> str:
        """Send a line, return the answer ("" when the connection is gone)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(text + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return ""
        return self._line()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    servers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        namespace(*CLIENT)
        sh("ip", "addr", "add", f"{VIP}/32", "dev", CLIENT[1])
        for name, real in REALS.items():
            namespace(*real)
            servers[name] = subprocess.Popen(
                ["ip", "netns", "exec", real[0], "socat", f"TCP-LISTEN:{PORT},bind={real[3]},fork,reuseaddr",
                 f"SYSTEM:echo {name}; exec cat"], stdin=subprocess.DEVNULL)
            wait_until(lambda ip=real[3]: port_open(ip, PORT), f"echo server on {real[3]}")
        yield servers
    finally:
        for server in servers.values():
            server.kill()
            server.wait()
        for ns, device, *_ in [CLIENT, *REALS.values()]:  # the link first: a namespace goes asynchronously
            subprocess.run(["ip", "link", "del", device], check=False, capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        with Nft() as nft:
            try:
                nft.run("delete table inet saru")
            except NftError:  # gone already (the test's stop removed it)
                pass


def service(*names: str, weights: dict[str, int] | None = None) -> Table:
    weights = weights or {}
    dests = {(REALS[n][3], PORT): Dest(REALS[n][3], PORT, "masq", weights.get(n, 1)) for n in names}
    return Table.of([Service(KEY, ServiceSettings("rr"), dests)])


def nft(command: str) -> str:
    with Nft() as handle:
        return handle.run(command)


def conntrack() -> list[str]:
    """The director's conntrack table, one entry a line (``[OFFLOAD]`` marks offloaded flows)."""
    return Path("/proc/net/nf_conntrack").read_text().splitlines()


def offloaded(real: str) -> list[str]:
    """Conntrack's offloaded entries of flows DNATed to ``real``."""
    return [line for line in conntrack() if "[OFFLOAD]" in line and f"src={real} " in line]


def new_connections(count: int) -> dict[str, int]:
    """``count`` fresh connections to the VIP: which real answered, how often."""
    seen: dict[str, int] = {}
    for _ in range(count):
        echo = Echo()
        seen[echo.server] = seen.get(echo.server, 0) + 1
        echo.close()
    return seen


async def test_flowtable_offloads_nat_flows_and_new_flows_follow_the_table(topo: object) -> None:
    plane = NftDataplane(flowtable=DEVICES)
    await plane.start()
    echoes: list[Echo] = []
    try:
        both = service("rs1", "rs2")
        await plane.apply(diff(Table(), both))
        listing = nft("list table inet saru")
        assert "flowtable ft" in listing and "flow add @ft" in listing, listing
        for device in DEVICES:
            assert device in nft("list flowtable inet saru ft")

        # traffic reaches both reals and comes back through the director
        assert new_connections(4) == {"rs1": 2, "rs2": 2}

        # a long-lived connection per real: after the handshake its flow is offloaded, and it
        # keeps working on the fast path (NAT done by the flowtable at the device's ingress)
        echoes = [Echo(), Echo()]
        assert sorted(e.server for e in echoes) == ["rs1", "rs2"]
        for echo in echoes:
            assert echo.ask("ping") == "ping"
        real_of = {e.server: REALS[e.server][3] for e in echoes}
        wait_until(lambda: all(offloaded(ip) for ip in real_of.values()), "[OFFLOAD] conntrack entries")
        # Saru still lists them (the kernel dumps offloaded entries without protocol info)
        listed = {(c.dest[0], c.state) for c in await plane.connections()}
        assert {(ip, "ESTABLISHED") for ip in real_of.values()} <= listed, listed
        for echo in echoes:
            for n in range(20):
                assert echo.ask(f"line {n}") == f"line {n}"

        # forwarded traffic that is not a virtual's is not offloaded: the client reaching rs1's own
        # address through the director (routed, not NATed) stays on the ordinary path
        direct = Echo(real_of["rs1"])
        echoes.append(direct)
        for n in range(5):
            assert direct.ask(f"direct {n}") == f"direct {n}"
        mine = [line for line in conntrack() if f"src={CLIENT[3]} dst={real_of['rs1']} " in line]
        assert mine and not [line for line in mine if "[OFFLOAD]" in line], mine

        # rs2 quiesced (weight 0): new connections go to rs1 only, rs2's established flow goes on
        await plane.apply(diff(await plane.read(), service("rs1", "rs2", weights={"rs2": 0})))
        assert new_connections(4) == {"rs1": 4}
        by_name = {e.server: e for e in echoes}
        assert by_name["rs2"].ask("still there") == "still there"

        # a restart adopts the table and the flowtable: nothing to write, and the next change is
        # written without recreating the flowtable (its offloaded flows stay)
        await plane.close()
        plane = NftDataplane(flowtable=DEVICES)
        await plane.start()
        assert await plane.read() == service("rs1", "rs2", weights={"rs2": 0})
        flowtable_before = nft("list flowtable inet saru ft")
        await plane.apply([])
        assert plane.last_apply == "none"
        # a restart under another [nft] flowtable rewrites it at once (and back)
        for devices in (DEVICES[:2], DEVICES):
            await plane.close()
            plane = NftDataplane(flowtable=devices)
            await plane.start()
            assert await plane.read() == service("rs1", "rs2", weights={"rs2": 0})  # the daemon reads first
            await plane.apply([])
            assert plane.last_apply == "full"
            assert ("ft-rs2" in nft("list flowtable inet saru ft")) == (devices == DEVICES)
        assert by_name["rs2"].ask("still there") == "still there"

        # rs2 removed with expire_nodest_conn: its conntrack entries are deleted, which tears its
        # offloaded flow down too — the client's connection ends instead of hanging on
        plane.expire_nodest_conn = True
        await plane.apply(diff(await plane.read(), service("rs1")))
        assert plane.last_apply == "incremental"  # set elements and chains: the flowtable stays as it is
        assert nft("list flowtable inet saru ft") == flowtable_before
        wait_until(lambda: not offloaded(real_of["rs2"]), "rs2's offloaded flow to go")
        assert by_name["rs2"].ask("gone?") == ""
        assert by_name["rs1"].ask("still here") == "still here"  # rs1's flow untouched
        # a flow offloaded before its flowtable was recreated (the restarts above) goes on through
        # the ordinary path (Debian's 6.1 kernel does not offload it again); new flows are offloaded
        fresh = Echo()
        echoes.append(fresh)
        assert fresh.server == "rs1"
        wait_until(lambda: fresh.ask("x") == "x" and bool(offloaded(real_of["rs1"])), "a new flow offloaded")
        assert new_connections(3) == {"rs1": 3}

        # stop: the table, flowtable and all, is gone
        await plane.apply(diff(await plane.read(), Table()))
        assert "inet saru" not in nft("list tables")
    finally:
        for echo in echoes:
            echo.close()
        await plane.close()


async def test_flowtable_refusals(topo: object) -> None:
    with pytest.raises(DataplaneError, match="stateless NAT"):
        NftDataplane(nat="stateless", flowtable=DEVICES)
    plane = NftDataplane(flowtable=("ft-cli", "ft-nowhere"))
    await plane.start()
    try:
        with pytest.raises(DataplaneError, match="no network interface ft-nowhere"):
            await plane.apply(diff(Table(), service("rs1")))
        assert "inet saru" not in nft("list tables")
        # direct routing only: nothing to offload, no flowtable written
        dr = Table.of([Service(KEY, ServiceSettings("rr"), {(REALS["rs1"][3], PORT): Dest(REALS["rs1"][3], PORT,
                                                                                       "gate", 1)})])
        ok = NftDataplane(flowtable=DEVICES)
        await ok.start()
        await ok.apply(diff(Table(), dr))
        assert "flowtable" not in nft("list ruleset")
        await ok.apply(diff(await ok.read(), Table()))
        await ok.close()
    finally:
        await plane.close()
