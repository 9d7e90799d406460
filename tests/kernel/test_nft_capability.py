"""The nftables data plane under least privilege: a process that is not root but holds CAP_NET_ADMIN
(``saru.service``: ``User=saru`` + ``AmbientCapabilities=CAP_NET_ADMIN …``) may program nftables, so
``--dataplane auto`` picks it and ``--dataplane nft`` is not refused; without the capability it says why.

Run for real: Debian's python as ``nobody`` (``setpriv``), with and without the ambient capability, in a
network namespace of the test's own (``tests.lab.Lab``), asking the kernel through libnftables.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import require
from tests.lab import Lab

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
#: the interpreter a non-root user can run (the test venv's may live under root's home)
SYSTEM_PYTHON = "/usr/bin/python3"
PROBE = "from saru.dataplane.select import availability; ok, why = availability('nft'); print(ok, why)"


@pytest.fixture
def lan() -> Iterator[Lab]:
    ok, why = Lab.available()
    require(ok, why)
    require(shutil.which("setpriv") is not None, "setpriv (util-linux) is not installed")
    require(shutil.which("nft") is not None or Path("/usr/lib/x86_64-linux-gnu/libnftables.so.1").exists(),
            "nftables is not installed")
    require(os.access(SYSTEM_PYTHON, os.X_OK), f"{SYSTEM_PYTHON} is not installed")
    with Lab(["director"]) as lab:
        yield lab


def probe_as_nobody(lan: Lab, caps: str) -> str:
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if caps:
        argv += [f"--inh-caps={caps}", f"--ambient-caps={caps}"]
    else:
        argv += ["--inh-caps=-all", "--bounding-set=-all"]
    argv += ["env", f"PYTHONPATH={ROOT}", SYSTEM_PYTHON, "-c", PROBE]
    return lan["director"].run(*argv).stdout.strip()


def test_nft_is_available_to_a_non_root_process_with_cap_net_admin(lan: Lab) -> None:
    out = probe_as_nobody(lan, "+net_admin")
    assert out.startswith("True nf_tables through"), out


def test_nft_without_cap_net_admin_says_it_needs_the_capability(lan: Lab) -> None:
    out = probe_as_nobody(lan, "")
    assert out.startswith("False"), out
    assert "CAP_NET_ADMIN" in out, out
