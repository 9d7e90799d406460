"""``saru demo``: three real servers on loopback behind a Saru director, live.

Starts three small HTTP real servers (separate processes, so ``kill`` works on them) and a sorry
server for the fallback, writes an ldirectord.cf modelled on the UltraMonkey guide's, and runs the
director on 127.0.0.1:8080 with the userspace proxy data plane. Ctrl-C (or ``saru stop -c`` the
demo's config) stops everything. The config is named ``demo-PORT.cf`` and the director's control
socket after it, as for ``saru run``, so ``saru status -c`` that file finds the demo's director
(and a second demo on another port, or a real director's ``ldirectord.cf``, is another daemon).

The demo turns the HTTP API and dashboard on (a ``saru.toml`` with ``[api]`` beside the config):
on 127.0.0.1, port ``--api-port`` (default 9180, or any free port when 9180 is taken), with a write
token made for this run; the dashboard's URL and the token are printed.

The instructions are printed once the director is ready. A taken port is refused before anything
starts or is written (exit status 1); a director that cannot program its table within 10 seconds
stops the demo with exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from saru.cli.target import resolve_target
from saru.daemon import Daemon, DaemonOptions

CHECK_PAGE = "haCheker/haCheck.html"  # the guide's spelling, kept on purpose
START_TIMEOUT = 10.0
API_PORT = 9180  # the API's default port; the demo takes any free one when it is taken


@dataclass
class RealServer:
    name: str
    port: int
    root: Path
    process: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_problem(port: int) -> str:
    """Why the director could not listen on 127.0.0.1:``port`` (binding it as the proxy does), or ''."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return ""


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Wait for the real server's listen socket (connect attempts), failing fast if it died."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"real server on port {port} exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"real server on port {port} did not start within {timeout}s")


def start_real_server(name: str, root: Path, body: str, check: bool = True) -> RealServer:
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(body)
    if check:
        (root / CHECK_PAGE).parent.mkdir(parents=True, exist_ok=True)
        (root / CHECK_PAGE).write_text("up and running\n")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "saru.demo.backends", "--port", str(port), "--root", str(root),
         "--name", name],
        stdin=subprocess.DEVNULL,
    )
    _wait_listening(port, process)
    return RealServer(name, port, root, process)


def demo_config(workdir: Path, port: int, reals: list[RealServer], sorry: RealServer) -> str:
    lines = [
        "# Saru demo — modelled on the ldirectord.cf of the UltraMonkey deployment guide.",
        "# Edit and save: autoreload=yes applies the change within seconds.",
        "checktimeout=2",
        "checkinterval=2",
        "autoreload=yes",
        f'logfile="{workdir / "ldirectord.log"}"',
        "quiescent=no",
        "",
        f"virtual=127.0.0.1:{port}",
    ]
    lines += [f"\treal=127.0.0.1:{r.port} masq" for r in reals]
    lines += [
        f"\tfallback=127.0.0.1:{sorry.port} masq",
        "\tservice=http",
        "\tscheduler=rr",
        "\tprotocol=tcp",
        "\tchecktype=negotiate",
        f'\trequest="{CHECK_PAGE}"',
        '\treceive="up and running"',
    ]
    return "\n".join(lines) + "\n"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run a live demo on loopback (no root needed)", description=__doc__)
    p.add_argument("--port", type=int, default=8080, help="director port on 127.0.0.1 (default 8080)")
    p.add_argument("--dir", type=Path, help="work directory (default: a new temporary one)")
    p.add_argument("--duration", type=float, help="stop by itself after this many seconds")
    p.add_argument("--api-port", type=int, default=0, metavar="PORT",
                   help=f"HTTP API and dashboard port on 127.0.0.1 (default {API_PORT}, or a free one when "
                        f"{API_PORT} is taken)")
    p.set_defaults(func=demo)


def api_settings(workdir: Path, api_port: int) -> tuple[Path, str]:
    """The demo's saru.toml (``[api]`` on 127.0.0.1:``api_port`` with a new token) and the token."""
    token = secrets.token_hex(16)
    token_file = workdir / "api.token"
    token_file.touch(mode=0o600)
    token_file.write_text(token + "\n")
    settings = workdir / "saru.toml"
    settings.write_text(f'# the demo\'s HTTP API and dashboard\n[api]\nlisten = "127.0.0.1:{api_port}"\n'
                        f'token_file = "{token_file.name}"\n')
    return settings, token


def instructions(port: int, workdir: Path, reals: list[RealServer], sorry: RealServer, config: Path,
                 api_port: int = 0, token: str = "") -> str:
    beside_python = Path(sys.executable).parent / "saru"
    saru = shutil.which("saru") or (str(beside_python) if beside_python.exists()
                                    else f"{sys.executable} -m saru")
    rows = "\n".join(f"  {r.name}  http://127.0.0.1:{r.port}/   pid {r.process.pid}   docroot {r.root}"
                     for r in reals)
    return f"""
Saru demo is running — director http://127.0.0.1:{port}/ (userspace proxy data plane)
{rows}
  sorry server (fallback) http://127.0.0.1:{sorry.port}/   pid {sorry.process.pid}
{api_text(port, api_port, token, reals)}
Try, in another terminal:
  curl -s http://127.0.0.1:{port}/                 # answers rotate over the real servers (rr)
  {saru} status -c {config}
  kill {reals[1].process.pid}        # real 2 is deleted from the table within ~4 s
  rm {reals[2].root / CHECK_PAGE}   # check page gone: real 3 deleted too
  kill {reals[0].process.pid}        # last real gone: the fallback (sorry server) answers
  $EDITOR {config}      # autoreload=yes: saved changes apply within seconds
  tail -f {workdir / "ldirectord.log"}

Ctrl-C (or {saru} stop -c {config}) stops everything.
"""


def api_text(port: int, api_port: int, token: str, reals: list[RealServer]) -> str:
    if not api_port:
        return ""
    base = f"http://127.0.0.1:{api_port}"
    return f"""
Dashboard: {base}/    (write token for its Drain/Enable/Disable buttons: {token})
  curl -s {base}/api/v1/status
  curl -sN {base}/api/v1/events                    # live events (Server-Sent Events)
  curl -s -X POST -H 'Authorization: Bearer {token}' \\
       -d '{{"proxy": "tcp/127.0.0.1:{port}", "server": "127.0.0.1:{reals[0].port}"}}' {base}/api/v1/servers/drain
"""


def choose_api_port(wanted: int, director_port: int) -> tuple[int, str]:
    """(port, problem): ``wanted`` if free (problem otherwise); 0 means API_PORT, else any free port."""
    if wanted:
        if not 0 < wanted < 65536:
            return 0, f"--api-port {wanted} is not a port (1-65535)"
        problem = port_problem(wanted) or ("it is the director's port" if wanted == director_port else "")
        return wanted, f"127.0.0.1:{wanted} is in use ({problem}); choose another --api-port" if problem else ""
    if API_PORT != director_port and not port_problem(API_PORT):
        return API_PORT, ""
    while True:
        port = _free_port()
        if port != director_port:
            return port, ""


def demo(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        print(f"saru demo: --port {args.port} is not a port (1-65535)", file=sys.stderr)
        return 2
    problem = port_problem(args.port)
    if problem:
        print(f"saru demo: 127.0.0.1:{args.port} is in use ({problem}); choose another port with --port",
              file=sys.stderr)
        return 1
    api_port, problem = choose_api_port(args.api_port, args.port)
    if problem:
        print(f"saru demo: {problem}", file=sys.stderr)
        return 1 if api_port else 2
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="saru-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    servers: list[RealServer] = []
    try:
        for i in (1, 2, 3):
            servers.append(start_real_server(f"rs{i}", workdir / f"rs{i}", f"Hello from real server {i}\n"))
        sorry = start_real_server("sorry", workdir / "sorry",
                                  "Sorry, every real server is down (fallback)\n", check=False)
        servers.append(sorry)
        config = workdir / f"demo-{args.port}.cf"
        config.write_text(demo_config(workdir, args.port, servers[:3], sorry))
        ctl = resolve_target(str(config)).control  # the socket saru status/stop -c CONFIG look for
        settings, token = api_settings(workdir, api_port)
        # an operator's drain/disable in the demo stays with the demo, not in the machine's /var/lib/saru
        os.environ.setdefault("SARU_STATE_DIR", str(workdir / "state"))
        text = instructions(args.port, workdir, servers[:3], sorry, config, api_port, token)
        options = DaemonOptions(config_path=str(config), dataplane="proxy", control_path=str(ctl),
                                settings_path=str(settings),
                                console=sys.stderr, start_timeout=START_TIMEOUT,
                                start_timeout_hint="choose another --port if it is taken",
                                on_ready=lambda: print(text, flush=True))
        code = asyncio.run(_run(Daemon(options), args.duration))
        if code != 0:
            print(f"saru demo: the director stopped with status {code} (see the messages above)",
                  file=sys.stderr)
        return code
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.process.terminate()
        for server in servers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(5)
        if args.dir is None and not os.environ.get("SARU_DEMO_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)


async def _run(daemon: Daemon, duration: float | None) -> int:
    task = asyncio.create_task(daemon.run())
    if duration is not None:
        done, _ = await asyncio.wait({task}, timeout=duration)
        if not done:
            daemon.stop()
    return await task
