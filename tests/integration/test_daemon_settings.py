"""``saru run --settings saru.toml``: a reload re-reads saru.toml too; a bad one is refused as a whole and
the running table stays; what cannot change under traffic ([director], [ha]) waits for a restart, saying so."""

from __future__ import annotations

from pathlib import Path

from tests.director import Director, get
from tests.helpers import free_port

CONFIG = """\
checktimeout=2
checkinterval=1
logfile="{log}"

virtual=127.0.0.1:{port}
\treal=127.0.0.1:{real} masq
\tservice=http
\tchecktype=negotiate
\trequest="/check.html"
\treceive="up"
"""


def test_reload_rereads_settings(nginx, tmp_path: Path) -> None:
    real = nginx("rs1", files={"/check.html": "up"})
    port = free_port()
    settings = tmp_path / "saru.toml"
    settings.write_text('[cluster]\ngroup = "G1"\n')
    d = Director(tmp_path, CONFIG.format(log=tmp_path / "saru.log", port=port, real=real.port),
                 ("--settings", str(settings)))
    try:
        d.wait_ready(20)
        assert get(port, "/check.html")[0] == 200

        settings.write_text('[cluster]\ngroup = "G1"\n\n[ha]\npriority = 0\n')
        answer = d.command("reload")
        assert answer["reloaded"] is False
        assert any(f"{settings}:5: [ha] priority" in e for e in answer["errors"]), answer
        assert get(port, "/check.html")[0] == 200  # the running table is untouched

        settings.write_text('[director]\ndataplane = "nft"\n\n[ha]\ninterface = "eth0"\nvips = ["10.9.9.9/24"]\n')
        answer = d.command("reload")
        assert answer["reloaded"] is True, answer
        held = " ".join(answer["warnings"])
        assert "[director] changed: it takes effect at the next restart" in held
        assert "[ha] changed: it takes effect at the next restart" in held
        status = d.status()
        assert status["dataplane"]["name"] == "proxy" and not status.get("ha")  # still as started
        assert get(port, "/check.html")[0] == 200
    finally:
        assert d.stop() == 0, d.log_text()
