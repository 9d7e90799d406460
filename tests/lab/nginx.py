"""The guide's real servers: nginx in a lab host, serving ``/haCheker/haCheck.html`` = "up and running"."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers import NGINX_CONF
from tests.lab.netns import Host
from tests.lab.wait import wait_for

CHECK_URL = "http://127.0.0.1/haCheker/haCheck.html"


def nginx_site(workdir: Path, role: str) -> Path:
    """The directory of real server ``role``'s nginx: document root with ``/haCheker/haCheck.html`` =
    "up and running" (the guide's check page) and ``index.html``, temp dir, ``nginx.conf``."""
    d = workdir / f"nginx-{role}"
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    (d / "root" / "haCheker").mkdir(parents=True, exist_ok=True)
    (d / "root" / "index.html").write_text(f"{role} hello\n")
    (d / "root" / "haCheker" / "haCheck.html").write_text("up and running\n")
    (d / "nginx.conf").write_text(nginx_conf(d, role))
    return d


def nginx_conf(directory: Path, name: str) -> str:
    """nginx.conf of a real server: ports 80 and 8080 on IPv4 and IPv6, header X-Real-Server."""
    server = (f"    server {{\n        listen 80 default_server;\n        listen [::]:80 default_server;\n"
              f"        listen 8080;\n        listen [::]:8080;\n        root {directory}/root;\n"
              f"        add_header X-Real-Server {name} always;\n    }}")
    return NGINX_CONF.format(user="user root;", dir=directory, servers=server)


def start_nginx_site(host: Host, workdir: Path, timeout: float = 10) -> Path:
    """Start nginx with ``nginx_site(workdir, host.name)`` in ``host`` (stopped at the lab's teardown) and
    wait until it serves the check page; returns the site directory."""
    d = nginx_site(workdir, host.name)
    host.popen("nginx", "-c", str(d / "nginx.conf"), "-e", str(d / "error.log"),
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: host.run("curl", "-sf", "-m", "1", "-o", "/dev/null", CHECK_URL, check=False).returncode == 0,
             timeout, f"nginx in {host.name}", interval=0.05)
    return d
