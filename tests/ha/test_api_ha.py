"""The HTTP API of two HA directors (VRRPv3, nftables, the guide's topology in namespaces): HA
transitions and split brain told on the event stream, ``POST /api/v1/ha/resign`` and ``/takeover``.

The API listens on a unix socket in each director's work directory, so the test (outside the
directors' network namespaces) reaches it through the file system; curl speaks HTTP over it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ha.bed import DIRECTORS, Director, HABed, dr_bed, wait_for
from tests.ha.test_failover import reset
from tests.helpers import require

pytestmark = pytest.mark.timeout(120)
TOKEN = "ha-api-token"


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HABed]:
    ok, why = HABed.available()
    require(ok, why)
    with dr_bed(tmp_path_factory.mktemp("ha-api")) as b:
        yield b


@pytest.fixture
def directors(bed: HABed) -> Iterator[list[Director]]:
    started: list[Director] = []
    try:
        yield started
    finally:
        for d in started:
            d.stop()
        reset(bed)


def api(d: Director, method: str, path: str, body: object = None, token: str | None = TOKEN) -> tuple[int, Any]:
    args = ["curl", "-s", "-w", "\n%{http_code}", "--unix-socket", str(d.workdir / "api.sock"), "-X", method]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    if body is not None:
        args += ["-d", json.dumps(body)]
    out = subprocess.run([*args, f"http://saru{path}"], capture_output=True, text=True, timeout=20).stdout
    text, _, code = out.rpartition("\n")
    return int(code), json.loads(text) if text.startswith("{") else text


class Events:
    """``curl -N`` on a director's ``/api/v1/events``: the JSON events as they come."""

    def __init__(self, d: Director) -> None:
        self.proc = subprocess.Popen(["curl", "-sN", "--unix-socket", str(d.workdir / "api.sock"),
                                      "http://saru/api/v1/events"], stdout=subprocess.PIPE, text=True)
        self.events: list[dict[str, Any]] = []
        self.comments = 0
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        wait_for(lambda: self.comments > 0, 10, "the event stream connected")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("data: "):
                self.events.append(json.loads(line[6:]))
            elif line.startswith(":"):
                self.comments += 1

    def wait(self, kind: str, timeout: float = 10, **fields: object) -> dict[str, Any]:
        return wait_for(lambda: next((e for e in self.events if e["type"] == kind
                                      and all(e.get(k) == v for k, v in fields.items())), None), timeout,
                        f"a {kind} event {fields or ''}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def test_ha_transitions_split_brain_resign_and_takeover_through_the_api(bed: HABed, directors: list[Director]) -> None:
    ld1 = bed.director("ld1", api_token=TOKEN)
    directors.append(ld1)
    ld1.wait_state("master")
    ld2 = bed.director("ld2", api_token=TOKEN)
    directors.append(ld2)
    ld2.wait_state("backup")
    wait_for(lambda: ld2.ha()["master"] == DIRECTORS["ld1"], 5, "ld2 hearing ld1")
    # saru plan on the backup plans as its reconciler does: nothing in the table while it is backup
    plan = subprocess.run([sys.executable, "-m", "saru", "plan", "-c", str(ld2.workdir / "saru.toml"),
                           "--control", str(ld2.control)], capture_output=True, text=True, timeout=30)
    assert plan.returncode == 0, plan.stderr
    assert "# gated: this director is an HA backup without warm_standby" in plan.stdout
    assert "# no changes" in plan.stdout and "-A " not in plan.stdout, plan.stdout
    status, doc = api(ld1, "GET", "/api/v1/status", token=None)
    assert status == 200 and doc["ha"]["state"] == "master"
    events1, events2 = Events(ld1), Events(ld2)
    try:
        bed.block_bridge("cut", "ip protocol 112")  # the VRRP path between the directors is cut
        became = events2.wait("ha_state_change", state="master")
        assert became["vrid"] == 51 and became["message"].startswith("HA: became MASTER")
        bed.unblock_bridge("cut")
        seen = wait_for(lambda: next((e for e in events1.events + events2.events if e["type"] == "split_brain"),
                                     None), 10, "a split_brain event")
        assert seen["vrid"] == 51 and "split brain" in seen["message"]
        wait_for(lambda: sorted((ld1.state(), ld2.state())) == ["backup", "master"], 10, "one master again")
        master, backup = (ld1, ld2) if ld1.state() == "master" else (ld2, ld1)
        m_events = events1 if master is ld1 else events2
        status, doc = api(master, "POST", "/api/v1/ha/resign", {"hold": 5}, token="wrong")
        assert status == 403 and master.state() == "master"
        status, doc = api(master, "POST", "/api/v1/ha/resign", {"hold": 5})
        assert (status, doc) == (200, {"resigned": True, "hold": 5.0})
        m_events.wait("ha_state_change", state="backup")
        backup.wait_state("master")
        assert any("API: POST /api/v1/ha/resign from a unix socket client: resigned mastership for 5s" in e
                   for e in master.events())
        status, doc = api(master, "POST", "/api/v1/ha/takeover")
        assert (status, doc) == (200, {"takeover": True})
        master.wait_state("master")
        assert bed.served(timeout=10) < 10
    finally:
        events1.close()
        events2.close()
