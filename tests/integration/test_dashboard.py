"""The dashboard (``GET /``) in a real headless Chromium against a real ``saru run`` with its API on,
in front of real nginx servers: the reals are listed, a stopped real turns DOWN live (no reload),
the Drain button with the token drains it in the data plane, no token means no write buttons, the
page fits a phone-width screen, the alarms (panic mode) show in the HA card, and 1,000 reals render
and filter (the time to first render goes to the test log)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser import (
    ApiDirector,
    Dashboard,
    ManyPortNginx,
    api_director,
    free_ports,
    headless_chromium,
    require_browser,
    wait_until,
)
from tests.director import get
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(240)

CHECK = "/haCheker/haCheck.html"


def config_text(workdir: Path, virtuals: dict[int, list[int]], *, interval: float = 1.0) -> str:
    """One negotiate-checked HTTP virtual on 127.0.0.1:PORT per entry, with its reals' ports."""
    blocks = []
    for vport, ports in virtuals.items():
        reals = "\n".join(f"\treal=127.0.0.1:{p} masq 1" for p in ports)
        blocks.append(f"virtual=127.0.0.1:{vport}\n{reals}\n\tservice=http\n\tscheduler=wrr\n\tprotocol=tcp\n"
                      f'\tchecktype=negotiate\n\trequest="{CHECK.lstrip("/")}"\n\treceive="up and running"\n')
    return (f"checktimeout=1\ncheckinterval={interval:g}\nquiescent=no\n"
            f'logfile="{workdir / "ldirectord.log"}"\n\n' + "\n".join(blocks))


@pytest.fixture
def browser():
    require_browser()
    with headless_chromium() as driver:
        yield driver


@pytest.fixture
def three_reals(nginx):
    return [nginx(name=f"rs{i}", files={CHECK: "up and running\n", "/index.html": f"rs{i}\n"}) for i in (1, 2, 3)]


@pytest.fixture
def director_with_api(tmp_path, three_reals):
    vport = free_port()
    started: list[ApiDirector] = []
    d = api_director(tmp_path, config_text(tmp_path, {vport: [rs.port for rs in three_reals]}))
    started.append(d)
    yield d, f"tcp/127.0.0.1:{vport}", vport
    for each in started:
        each.director.stop()


def ipvsadm_weights(control: Path) -> dict[str, int]:
    """``saru ipvsadm -L -n``: the data plane's weight of each real, as ipvsadm lists it."""
    out = subprocess.run([sys.executable, "-m", "saru", "ipvsadm", "-L", "-n", "--control", str(control)],
                         check=True, capture_output=True, text=True, timeout=20).stdout
    return {m[1]: int(m[2]) for m in re.finditer(r"->\s+(\S+)\s+\S+\s+(\d+)", out)}


def test_reals_listed_and_a_stopped_real_turns_down_live_without_write_buttons(
        browser, director_with_api, three_reals):
    d, proxy, _ = director_with_api
    page = Dashboard(browser, d.url)
    page.open()
    servers = {f"127.0.0.1:{rs.port}" for rs in three_reals}
    wait_until("every real listed UP", lambda: {r["server"] for r in page.rows() if r["state"] == "UP"} == servers)
    rows = page.rows()
    assert {(r["proxy"], r["server"]) for r in rows} == {(proxy, s) for s in servers}
    assert all(r["badge"] == "UP" for r in rows), rows  # the state in words, not only in colour
    # without the token: no write buttons anywhere, and the token form is offered
    assert all(r["actions"] == [] for r in rows), rows
    assert browser.execute_script("return document.querySelectorAll('button[data-action]').length") == 0
    assert browser.execute_script("return !document.getElementById('token-form').hidden")
    # the page text carries the data plane and why it was chosen
    assert "proxy" in browser.execute_script("return document.getElementById('dp-name').textContent")

    victim = three_reals[1]
    server = f"127.0.0.1:{victim.port}"
    browser.execute_script("window.__sameDocument = true")  # gone if the page were reloaded
    page.watch(proxy, server)
    events_before = page.metrics()["events"]
    stopped_at = time.monotonic()
    victim.stop()
    seen_at, _ = d.director.wait_for(rf"Real server down: {re.escape(server)} ", after=stopped_at)
    seen_wall = time.time() - (time.monotonic() - seen_at)
    page.wait_state(proxy, server, "DOWN")
    row = page.row(proxy, server)
    assert row is not None and row["badge"] == "DOWN"
    assert browser.execute_script("return window.__sameDocument === true"), "the page was reloaded"
    assert page.metrics()["events"] > events_before, "no Server-Sent Event reached the page"
    changes = page.changes(proxy, server)
    assert changes and changes[-1][0] == "DOWN", changes
    delay = changes[-1][1] - seen_wall
    print(f"dashboard: row DOWN {delay * 1000:.0f} ms after the daemon logged the failure")
    # polling alone would take up to 5 s: the live stream must bring it well before
    assert delay < 3.0, f"the row changed {delay:.2f}s after the daemon saw the failure"
    # the other reals stay UP
    assert {r["server"] for r in page.rows() if r["state"] == "UP"} == servers - {server}

    # readable on a phone-width window: nothing wider than the screen, each cell labelled
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    layout = browser.execute_script("""
      const td = document.querySelector('#virtuals td.state');
      return {page: document.documentElement.scrollWidth, screen: window.innerWidth,
              label: getComputedStyle(td, '::before').content, header: getComputedStyle(
                document.querySelector('#virtuals thead')).display};""")
    assert layout["screen"] == 390 and layout["page"] <= layout["screen"], layout
    assert layout["label"] == '"State"' and layout["header"] == "none", layout

    # the alarms saru status shows: none so far; the two other reals failing together put the
    # virtual in panic mode (more than panic_threshold 50 % down), and the HA card says so
    alarms = "return [document.getElementById('alarms-none').hidden, document.getElementById('alarms-list').innerText]"
    assert browser.execute_script(alarms) == [False, ""]
    failed_at = time.monotonic()
    for rs in (three_reals[0], three_reals[2]):
        rs.stop()
    d.director.wait_for(r"ALARM: panic mode for tcp 127\.0\.0\.1", timeout=20, after=failed_at)
    wait_until("the panic alarm on the page", lambda: browser.execute_script(alarms)[0])
    assert browser.execute_script(alarms)[1] == (f"ALARM: panic mode for {proxy}: too many reals failed together; "
                                                 "its last known set is kept")
    assert browser.execute_script("return document.getElementById('alarms-list').className") == "bad-text"


def test_drain_button_with_the_token_drains_in_the_data_plane(browser, director_with_api, three_reals):
    d, proxy, vport = director_with_api
    page = Dashboard(browser, d.url)
    page.open()
    rs1 = three_reals[0]
    server = f"127.0.0.1:{rs1.port}"
    page.wait_state(proxy, server, "UP")
    assert page.row(proxy, server)["actions"] == []

    # a wrong token: the buttons appear, the write is refused (403) and nothing changes
    page.enter_token("not-the-token")
    wait_until("write buttons", lambda: page.row(proxy, server)["actions"] == ["drain", "enable", "disable"])
    page.click(proxy, server, "drain")
    wait_until("a refusal notice", lambda: "refused" in page.notice())
    assert "403" in page.notice() or "token" in page.notice().lower(), page.notice()
    assert ipvsadm_weights(d.director.control)[server] == 1
    page.forget_token()
    wait_until("no write buttons", lambda: all(r["actions"] == [] for r in page.rows()))

    # the right token, entered once: kept in this tab's sessionStorage, never in a cookie
    page.enter_token(d.token)
    wait_until("write buttons", lambda: page.row(proxy, server)["actions"] == ["drain", "enable", "disable"])
    assert browser.execute_script("return sessionStorage.getItem('saru.token')") == d.token
    assert d.token not in browser.execute_script("return document.cookie")
    page.click(proxy, server, "drain")
    page.wait_state(proxy, server, "DRAIN")
    wait_until("weight 0 in the data plane", lambda: ipvsadm_weights(d.director.control).get(server) == 0)
    assert {get(vport)[1] for _ in range(12)} == {"rs2", "rs3"}  # no new connection goes to rs1
    assert d.director.status()["virtuals"][0]["reals"][0]["weight"] == 0

    # a reload of the page keeps the token (same tab) and shows the drained state
    browser.refresh()
    page.open()
    assert page.state(proxy, server) == "DRAIN"
    assert page.row(proxy, server)["actions"] == ["drain", "enable", "disable"]

    page.click(proxy, server, "enable")
    page.wait_state(proxy, server, "UP")
    wait_until("the configured weight back", lambda: ipvsadm_weights(d.director.control).get(server) == 1)


def test_a_thousand_reals_render_and_filter(browser, tmp_path):
    """1,000 reals in 10 virtual services: first render time logged (no timed assertion), the filter
    narrows to one row and back, and a failing real's row still turns DOWN live."""
    ports = free_ports(999)
    farm = ManyPortNginx(tmp_path / "farm", ports, {CHECK: "up and running\n"}).start()
    lone = None
    d = None
    try:
        from tests.helpers import start_nginx

        lone = start_nginx(tmp_path / "lone", name="lone", files={CHECK: "up and running\n"})
        all_ports = [lone.port, *ports]
        vports = free_ports(10)
        virtuals = {vp: all_ports[i * 100:(i + 1) * 100] for i, vp in enumerate(vports)}
        d = api_director(tmp_path, config_text(tmp_path, virtuals, interval=2.0))
        page = Dashboard(browser, d.url)
        started = time.monotonic()
        page.open(60)
        opened = time.monotonic() - started
        wait_until("1,000 rows", lambda: len(page.rows()) == 1000, 30)
        metrics = page.metrics()
        print(f"dashboard with 1,000 reals: first render {metrics['firstRenderMs']:.0f} ms after navigation "
              f"(render itself {metrics['lastRenderMs']:.0f} ms; page ready in {opened:.2f}s by the test's clock)")

        proxy0 = f"tcp/127.0.0.1:{vports[0]}"
        target = f"127.0.0.1:{ports[500]}"
        page.filter(target)
        wait_until("one row left by the filter", lambda: [r["server"] for r in page.rows() if not r["hidden"]]
                   == [target])
        page.filter("")
        wait_until("every row back", lambda: sum(not r["hidden"] for r in page.rows()) == 1000)

        server = f"127.0.0.1:{lone.port}"
        page.wait_state(proxy0, server, "UP", 30)
        page.watch(proxy0, server)
        stopped_at = time.monotonic()
        lone.stop()
        seen_at, _ = d.director.wait_for(rf"Real server down: {re.escape(server)} ", after=stopped_at, timeout=30)
        seen_wall = time.time() - (time.monotonic() - seen_at)
        page.wait_state(proxy0, server, "DOWN")
        change = page.changes(proxy0, server)[-1]
        print(f"dashboard with 1,000 reals: row DOWN {(change[1] - seen_wall) * 1000:.0f} ms after the daemon "
              f"logged the failure")
        page.filter("down")
        wait_until("the filter by state", lambda: [r["server"] for r in page.rows() if not r["hidden"]] == [server])
    finally:
        if d is not None:
            d.director.stop()
        if lone is not None:
            lone.stop()
        farm.stop()
