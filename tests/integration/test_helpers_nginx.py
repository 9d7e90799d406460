"""The nginx fixture itself serves real files (guards every end-to-end test built on it)."""

import urllib.request


def test_nginx_serves_files(nginx):
    server = nginx(name="rs1", files={"/haCheker/haCheck.html": "up and running\n"})
    with urllib.request.urlopen(f"{server.url}/haCheker/haCheck.html", timeout=5) as resp:
        assert resp.read() == b"up and running\n"
        assert resp.headers["X-Real-Server"] == "rs1"
