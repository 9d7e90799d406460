"""``saru ipvsadm`` against a running daemon (proxy data plane): list, manual setup, save/restore,
connection entries and zeroed counters."""

from __future__ import annotations

import subprocess
import sys

from tests.director import Director, get
from tests.helpers import free_port
from tests.integration.test_daemon_e2e import CHECK, config_text


def ipvsadm(director: Director, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "saru", "ipvsadm", "--control", str(director.control), *args],
                          input=stdin, capture_output=True, text=True, timeout=30)


def test_list_manual_setup_save_and_restore(nginx, tmp_path):
    rs1 = nginx(name="rs1", files={CHECK: "up and running\n"})
    rs2 = nginx(name="rs2", files={CHECK: "up and running\n"})
    port = free_port()
    d = Director(tmp_path, config_text(tmp_path, port, [(rs1.port, 1)]))
    try:
        d.wait_ready()
        listing = ipvsadm(d, "-L", "-n")
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.splitlines()[:4] == [
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            f"TCP  127.0.0.1:{port} rr",
        ]
        assert listing.stdout.splitlines()[4].startswith(f"  -> 127.0.0.1:{rs1.port}")
        # the guide's manual LVS setup: a service of our own, by hand
        manual = free_port()
        assert ipvsadm(d, "-A", "-t", f"127.0.0.1:{manual}", "-s", "rr").returncode == 0
        for rs in (rs1, rs2):
            assert ipvsadm(d, "-a", "-t", f"127.0.0.1:{manual}", "-r", f"127.0.0.1:{rs.port}", "-m").returncode == 0
        assert {get(manual)[1] for _ in range(4)} == {"rs1", "rs2"}
        again = ipvsadm(d, "-a", "-t", f"127.0.0.1:{manual}", "-r", f"127.0.0.1:{rs1.port}", "-m")
        assert (again.returncode, again.stderr.strip()) == (255, "Destination already exists")
        missing = ipvsadm(d, "-d", "-t", "127.0.0.1:1", "-r", "127.0.0.1:2")
        assert (missing.returncode, missing.stderr.strip()) == (255, "No such service")
        bad = ipvsadm(d, "-a", "-t", "nonsense", "-r", "127.0.0.1:2")
        assert bad.returncode == 2
        saved = ipvsadm(d, "-S", "-n").stdout
        assert f"-A -t 127.0.0.1:{manual} -s rr" in saved.splitlines()
        assert f"-a -t 127.0.0.1:{manual} -r 127.0.0.1:{rs2.port} -m -w 1" in saved.splitlines()
        # delete the manual service, restore it from the saved rules, compare
        assert ipvsadm(d, "-D", "-t", f"127.0.0.1:{manual}").returncode == 0
        rules = "\n".join(line for line in saved.splitlines() if f":{manual} " in line + " ")
        restored = ipvsadm(d, "-R", stdin=rules + "\n")
        assert restored.returncode == 0, restored.stderr
        assert ipvsadm(d, "-S", "-n").stdout == saved
        assert "manual change (saru ipvsadm): Added virtual server" in d.log_text()
        stats = ipvsadm(d, "-L", "-n", "--stats", "-t", f"127.0.0.1:{manual}")
        assert stats.returncode == 0 and stats.stdout.splitlines()[0].split()[-1] == "OutBytes"
    finally:
        d.stop()


def test_connections_and_zero_on_the_proxy_plane(nginx, tmp_path):
    """``-L -n -c`` lists the proxy's relayed connections in ipvsadm's format; ``-Z`` zeroes totals."""
    import re
    import socket
    import time

    rs1 = nginx(name="rs1", files={CHECK: "up and running\n"})
    port = free_port()
    d = Director(tmp_path, config_text(tmp_path, port, [(rs1.port, 1)]))
    try:
        d.wait_ready()
        for _ in range(3):
            assert get(port, CHECK)[0] == 200
        stats = ipvsadm(d, "-L", "-n", "--stats", "--exact")
        service_line = next(line for line in stats.stdout.splitlines() if line.startswith("TCP"))
        assert int(service_line.split()[2]) >= 3  # Conns
        held = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            held.sendall(b"GET / HTTP/1.1\r\n")  # an unfinished request keeps the connection open
            client = f"127.0.0.1:{held.getsockname()[1]}"
            pattern = re.compile(rf"^TCP 00:00  ESTABLISHED {re.escape(client)}\s+127\.0\.0\.1:{port}\s+"
                                 rf"127\.0\.0\.1:{rs1.port}$", re.M)
            deadline = time.monotonic() + 10
            while True:
                listing = ipvsadm(d, "-L", "-n", "-c")
                assert listing.returncode == 0, listing.stderr
                if pattern.search(listing.stdout) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert listing.stdout.startswith(
                "IPVS connection entries\n"
                "pro expire state       source             virtual            destination\n")
            assert pattern.search(listing.stdout), listing.stdout
        finally:
            held.close()
        zero = ipvsadm(d, "-Z", "-t", f"127.0.0.1:{port}")
        assert (zero.returncode, zero.stdout) == (0, ""), zero.stderr
        stats = ipvsadm(d, "-L", "-n", "--stats", "--exact", "-t", f"127.0.0.1:{port}")
        assert stats.stdout.splitlines()[2].split()[2:] == ["0"] * 5, stats.stdout
        missing = ipvsadm(d, "-Z", "-t", "127.0.0.1:1")
        assert (missing.returncode, missing.stderr.strip()) == (255, "No such service")
        assert ipvsadm(d, "-Z").returncode == 0
    finally:
        d.stop()


async def test_proxy_udp_flows_are_connection_entries():
    """A UDP flow relayed by the proxy is an ``UDP`` entry counting down its idle timeout; ``zero``
    resets the totals but not the flow."""
    import asyncio
    import socket

    from saru.dataplane.proxy import ProxyDataplane
    from saru.model import AddDest, AddService, Dest, ServiceKey, ServiceSettings

    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    echo.setblocking(False)
    real_port = echo.getsockname()[1]
    key = ServiceKey("udp", "127.0.0.1", free_port(kind=socket.SOCK_DGRAM))
    plane = ProxyDataplane(udp_timeout=60)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    loop = asyncio.get_running_loop()
    try:
        await plane.apply([AddService(key, ServiceSettings("rr")),
                           AddDest(key, Dest("127.0.0.1", real_port, "masq", 1))])
        client.setblocking(False)
        await loop.sock_connect(client, ("127.0.0.1", key.port))
        await loop.sock_sendall(client, b"ping")
        data, _sender = await asyncio.wait_for(loop.sock_recvfrom(echo, 100), 5)
        assert data == b"ping"
        entries = await plane.connections()
        assert len(entries) == 1
        entry = entries[0]
        assert (entry.protocol, entry.state) == ("UDP", "UDP")
        assert entry.client == client.getsockname() and entry.virtual == ("127.0.0.1", key.port)
        assert entry.dest == ("127.0.0.1", real_port) and 55 < entry.expires <= 60
        assert (await plane.stats())[key].bytes_in == 4
        await plane.zero()
        assert (await plane.stats())[key].bytes_in == 0
        assert len(await plane.connections()) == 1
    finally:
        client.close()
        echo.close()
        await plane.close()
