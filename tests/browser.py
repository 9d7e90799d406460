"""A real headless Chromium driving the dashboard, and the pieces its tests and benchmark share.

Debian's ``chromium`` and ``chromium-driver`` through Selenium, with the driver's path given and
Selenium Manager told to stay offline: nothing is downloaded at run time. ``Dashboard`` is the page
as a test sees it (rows keyed by ``data-proxy``/``data-server``, their ``data-state`` word, the write
buttons, the token form). ``ManyPortNginx`` is one real nginx listening on many loopback ports, so a
director can have 1,000 reals that answer without 1,000 processes; ``api_director`` starts
``saru run`` with its HTTP API on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.director import Director
from tests.helpers import NGINX_CONF, free_port, require, wait_for_port

CHROMIUM = os.environ.get("SARU_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SARU_CHROMEDRIVER", "/usr/bin/chromedriver")


def require_browser() -> None:
    """Skip (fail in CI) without Debian's chromium, its driver, or the selenium package."""
    require(Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK),
            f"{CHROMIUM} is missing (Debian package chromium)")
    require(Path(CHROMEDRIVER).is_file() and os.access(CHROMEDRIVER, os.X_OK),
            f"{CHROMEDRIVER} is missing (Debian package chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        require(False, "the selenium package is missing (pip install -e '.[test]')")


@contextlib.contextmanager
def headless_chromium(width: int = 1280, height: int = 1000) -> Iterator[Any]:
    """A Selenium WebDriver on Debian's headless Chromium; quit on the way out."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never download a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-extensions", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(what: str, condition: Callable[[], Any], timeout: float = 15.0, every: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something true (returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last answer {last!r})")
        time.sleep(every)


#: the page's rows as the test sees them: proxy, server, state word, the write buttons' actions
ROWS_JS = """
return Array.from(document.querySelectorAll('#virtuals tr[data-server]')).map(tr => ({
  proxy: tr.dataset.proxy, server: tr.dataset.server, state: tr.dataset.state,
  badge: tr.querySelector('.badge').textContent, hidden: tr.hidden || tr.closest('section').hidden,
  actions: Array.from(tr.querySelectorAll('button[data-action]')).map(b => b.dataset.action),
}));
"""

#: record (epoch ms) when a row's data-state attribute changes, in the page itself
WATCH_JS = """
const [proxy, server] = arguments;
const tr = document.querySelector(`tr[data-proxy="${CSS.escape(proxy)}"][data-server="${CSS.escape(server)}"]`);
window.__saruChanges = window.__saruChanges || {};
const key = proxy + ' ' + server;
window.__saruChanges[key] = [];
new MutationObserver(() => window.__saruChanges[key].push(
  [tr.dataset.state, performance.timeOrigin + performance.now()]
)).observe(tr, {attributes: true, attributeFilter: ['data-state']});
return tr !== null;
"""


@dataclass
class Dashboard:
    """The dashboard page in a real browser."""

    driver: Any
    url: str

    def open(self, timeout: float = 20.0) -> None:
        self.driver.get(self.url)
        wait_until("the dashboard's first render", lambda: self.driver.execute_script(
            "return document.body.dataset.ready === '1'"), timeout)

    def rows(self) -> list[dict[str, Any]]:
        return list(self.driver.execute_script(ROWS_JS))

    def row(self, proxy: str, server: str) -> dict[str, Any] | None:
        return next((r for r in self.rows() if r["proxy"] == proxy and r["server"] == server), None)

    def state(self, proxy: str, server: str) -> str | None:
        return self.driver.execute_script(
            "const tr = document.querySelector(`tr[data-proxy=\"${CSS.escape(arguments[0])}\"]"
            "[data-server=\"${CSS.escape(arguments[1])}\"]`); return tr ? tr.dataset.state : null;",
            proxy, server)

    def wait_state(self, proxy: str, server: str, state: str, timeout: float = 15.0) -> None:
        wait_until(f"row {proxy} {server} shows {state}", lambda: self.state(proxy, server) == state, timeout)

    def watch(self, proxy: str, server: str) -> None:
        assert self.driver.execute_script(WATCH_JS, proxy, server), f"no row {proxy} {server}"

    def changes(self, proxy: str, server: str) -> list[tuple[str, float]]:
        """``[(state, epoch seconds)]`` of the watched row's changes."""
        got = self.driver.execute_script(
            "return (window.__saruChanges || {})[arguments[0]] || []", f"{proxy} {server}")
        return [(s, ms / 1000.0) for s, ms in got]

    def metrics(self) -> dict[str, Any]:
        return dict(self.driver.execute_script("return window.saruDashboard"))

    def enter_token(self, token: str) -> None:
        from selenium.webdriver.common.by import By

        field_ = self.driver.find_element(By.ID, "token-input")
        field_.clear()
        field_.send_keys(token)
        self.driver.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()

    def forget_token(self) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.ID, "token-forget").click()

    def click(self, proxy: str, server: str, action: str) -> None:
        from selenium.webdriver.common.by import By

        selector = f'tr[data-proxy="{proxy}"][data-server="{server}"] button[data-action="{action}"]'
        self.driver.find_element(By.CSS_SELECTOR, selector).click()

    def notice(self) -> str:
        return str(self.driver.execute_script(
            "const n = document.getElementById('notice'); return n.hidden ? '' : n.textContent"))

    def filter(self, text: str) -> None:
        from selenium.webdriver.common.by import By

        box = self.driver.find_element(By.ID, "filter")
        box.clear()
        if text:
            box.send_keys(text)
        else:  # clear() fires no input event
            self.driver.execute_script(
                "document.getElementById('filter').dispatchEvent(new Event('input'))")


@dataclass
class ManyPortNginx:
    """One real nginx answering on many 127.0.0.1 ports (each a real server of the director)."""

    directory: Path
    ports: list[int]
    files: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> ManyPortNginx:
        require(shutil.which("nginx") is not None, "nginx is not installed")
        (self.directory / "tmp").mkdir(parents=True, exist_ok=True)
        root = self.directory / "root"
        for path, content in self.files.items():
            (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / path.lstrip("/")).write_text(content)
        root.mkdir(exist_ok=True)
        listens = "".join(f"        listen 127.0.0.1:{p};\n" for p in self.ports)
        servers = f"    server {{\n{listens}        root {root};\n    }}\n"
        user = "user root;" if os.geteuid() == 0 else ""
        conf = self.directory / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, dir=self.directory, servers=servers))
        self.process = subprocess.Popen(["nginx", "-c", str(conf), "-e", str(self.directory / "error.log")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in (self.ports[0], self.ports[-1]):
            wait_for_port("127.0.0.1", port)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free right now on 127.0.0.1."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@dataclass
class ApiDirector:
    """``saru run`` with ``[api]`` on: its Director, the dashboard's URL and the write token."""

    director: Director
    url: str
    token: str
    config: Path
    settings: Path


def api_director(workdir: Path, config_text: str, token: str = "s3cret-dashboard-token") -> ApiDirector:
    """Start ``saru run --settings saru.toml`` (proxy data plane) whose saru.toml turns the API on at
    127.0.0.1:<free port> with a token file, its overrides kept under ``workdir`` (``SARU_STATE_DIR``);
    wait until it answers on that port."""
    port = free_port()
    token_file = workdir / "api.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    settings = workdir / "saru.toml"
    settings.write_text(f'[api]\nlisten = "127.0.0.1:{port}"\ntoken_file = "{token_file}"\n')
    # the operator's overrides (drain, disable) go to the test's directory, not /var/lib/saru
    env = {**os.environ, "SARU_STATE_DIR": str(workdir / "state")}
    director = Director(workdir, config_text, ("--settings", str(settings)), env=env)
    try:
        director.wait_ready(60)
        wait_for_port("127.0.0.1", port, 20)
    except BaseException:
        director.stop()
        raise
    return ApiDirector(director, f"http://127.0.0.1:{port}/", token, director.config, settings)
