"""Make docs/img/dashboard.png: the dashboard of ``saru demo`` in Debian's headless Chromium.

Starts ``saru demo`` on free ports, reads the dashboard's URL and write token from what it prints,
enters the token (so the rows have their buttons), drains real server 3 with its Drain button and
stops real server 2 (so the picture shows UP, DRAIN and DOWN rows with their reasons), waits until
the page shows it, and saves a screenshot of the whole page at 1280 px wide. Nothing is downloaded (the
browser and its driver are Debian's; tests/browser.py sets Selenium up offline).

    .venv/bin/python tools/dashboard_screenshot.py [--out docs/img/dashboard.png] [--width 1280]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import Dashboard, headless_chromium, require_browser, wait_until  # noqa: E402
from tests.helpers import free_port  # noqa: E402

URL = re.compile(r"(https?://127\.0\.0\.1:\d+/)\S*")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "dashboard.png")
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    require_browser()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="saru-shot-") as tmp:
        demo = subprocess.Popen([sys.executable, "-m", "saru", "demo", "--port", str(port), "--dir", tmp,
                                 "--api-port", str(free_port())],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env={**os.environ, "SARU_DEMO_KEEP": "", "SARU_STATE_DIR": tmp})
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(demo.stdout.readline, "")), daemon=True)
        reader.start()
        try:
            def dashboard_url() -> str | None:
                for line in list(lines):
                    match = URL.search(line)
                    if match and "dashboard" in line.lower():
                        return match.group(1)
                return None

            url = wait_until("saru demo printing the dashboard's URL", dashboard_url, 30)
            text = "".join(lines)
            pids = [int(p) for p in re.findall(r"pid (\d+)", text)]
            token = re.search(r"write token[^:]*: (\w+)", text)
            with headless_chromium(args.width, 900) as driver:
                page = Dashboard(driver, url)
                page.open()
                wait_until("three reals UP", lambda: [r["state"] for r in page.rows()].count("UP") == 3)
                rows = page.rows()
                if token:
                    page.enter_token(token.group(1))
                    wait_until("write buttons", lambda: page.rows()[2]["actions"])
                    page.click(rows[2]["proxy"], rows[2]["server"], "drain")
                    wait_until("one real DRAIN", lambda: page.state(rows[2]["proxy"], rows[2]["server"]) == "DRAIN")
                os.kill(pids[1], signal.SIGTERM)  # real server 2 (the order saru demo prints them in)
                wait_until("one real DOWN", lambda: page.state(rows[1]["proxy"], rows[1]["server"]) == "DOWN")
                time.sleep(1.5)  # let "checked … ago" and the ages tick once: a picture, not a test
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {  # the whole page, one picture
                    "width": args.width, "height": height, "deviceScaleFactor": 1, "mobile": False})
                args.out.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(args.out))
        finally:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(20)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
