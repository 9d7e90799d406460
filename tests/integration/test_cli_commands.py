"""The ``saru`` command line as an operator meets it, each command a real subprocess.

One name for one daemon (``-c`` the saru.toml or the ldirectord.cf, ``saru stop``), check-config
checking what run checks, quiet exits into closed pipes, help texts without docstring markup.
Daemons run the userspace proxy on 127.0.0.1 (no root needed) with their control sockets in a
private ``SARU_RUNTIME_DIR``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from saru.cli.main import build_parser
from tests.helpers import free_port

SARU = [sys.executable, "-m", "saru"]


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """A short private runtime directory (unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="saru-cli-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def saru(*args: str, runtime: Path | None = None, timeout: float = 60,
         stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SARU_RUNTIME_DIR": str(runtime)} if runtime else None
    return subprocess.run([*SARU, *args], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


def write_config(directory: Path, port: int, name: str = "rl.cf", scheduler: str = "rr") -> Path:
    """A one-virtual ldirectord.cf on 127.0.0.1:port; the real is never connected to (checktype=on)."""
    path = directory / name
    path.write_text(f"""\
checktimeout=1
checkinterval=1
logfile="{directory / 'ldirectord.log'}"

virtual=127.0.0.1:{port}
\treal=127.0.0.1:{free_port()} masq
\tchecktype=on
\tscheduler={scheduler}
""")
    return path


@dataclass
class Running:
    process: subprocess.Popen[str]
    cf: Path
    toml: Path
    port: int
    log: Path

    def stderr(self) -> str:
        return self.log.read_text()


def wait_until(condition: Callable[[], bool], what: str, process: subprocess.Popen[str],
               timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds (failing early if ``process`` exits, or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def daemon(tmp_path: Path, runtime_dir: Path) -> Iterator[Running]:
    """``saru run -c rl.toml`` (the toml names rl.cf and the proxy plane), as the README runs it."""
    port = free_port()
    cf = write_config(tmp_path, port)
    toml = tmp_path / "rl.toml"
    toml.write_text('[director]\nconfig = "rl.cf"\ndataplane = "proxy"\n')
    log = tmp_path / "daemon.stderr"
    with log.open("w") as err:
        process = subprocess.Popen([*SARU, "run", "-c", str(toml)], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=err, text=True,
                                   env={**os.environ, "SARU_RUNTIME_DIR": str(runtime_dir)})
    running = Running(process, cf, toml, port, log)
    try:
        wait_until(lambda: accepts(port), "the proxy listener", process)
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- item 4: one name for one daemon -------------------------------------------------------------------


def test_daemon_run_with_toml_is_found_by_every_command_with_either_file(daemon: Running,
                                                                        runtime_dir: Path) -> None:
    assert (runtime_dir / "rl.cf.sock").exists()  # named after the ldirectord.cf, whichever -c ran it
    for config in (daemon.toml, daemon.cf):
        status = saru("status", "-c", str(config), runtime=runtime_dir)
        assert status.returncode == 0, status.stderr
        assert f"127.0.0.1:{daemon.port}" in status.stdout and "data plane: proxy" in status.stdout
        plan = saru("plan", "-c", str(config), runtime=runtime_dir)
        assert plan.returncode == 0, plan.stderr
        assert f"# plan for {daemon.cf} (live table of the daemon at {runtime_dir / 'rl.cf.sock'}; proxy data plane)" \
            in plan.stdout
        listing = saru("ipvsadm", "-L", "-n", "--config", str(config), runtime=runtime_dir)
        assert listing.returncode == 0, listing.stderr
        assert f"TCP  127.0.0.1:{daemon.port} rr" in listing.stdout
        reload = saru("reload", "-c", str(config), runtime=runtime_dir)
        assert (reload.returncode, reload.stdout) == (0, "reloaded\n"), reload.stderr
    # failover-test finds the daemon too: it answers that this director runs no VRRP (not "cannot reach")
    failover = saru("failover-test", "-c", str(daemon.toml), "--timeout", "1", runtime=runtime_dir)
    assert failover.returncode == 1 and "cannot reach" not in failover.stderr, failover.stderr
    # and a saru.toml naming no ldirectord.cf is a clear error, not a silent look at another daemon
    bare = daemon.toml.with_name("bare.toml")
    bare.write_text("")
    refused = saru("status", "-c", str(bare), runtime=runtime_dir)
    assert refused.returncode == 2 and "[director] config is not set" in refused.stderr


def test_plan_against_a_live_proxy_daemon_plans_for_the_proxy(tmp_path: Path, runtime_dir: Path) -> None:
    """A gate real on its own port: the proxy connects to that port, so a reload changes nothing —
    ``saru plan`` must not show IPVS's port rewrite as pending changes."""
    port, real_port = free_port(), free_port()
    cf = tmp_path / "gate.cf"
    cf.write_text(f'logfile="{tmp_path / "ld.log"}"\nvirtual=127.0.0.1:{port}\n'
                  f"\treal=127.0.0.2:{real_port} gate\n\tchecktype=on\n")
    log = tmp_path / "daemon.stderr"
    with log.open("w") as err:
        process = subprocess.Popen([*SARU, "run", "-c", str(cf), "--dataplane", "proxy"], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=err, text=True,
                                   env={**os.environ, "SARU_RUNTIME_DIR": str(runtime_dir)})
    try:
        wait_until(lambda: saru("status", "-c", str(cf), runtime=runtime_dir).returncode == 0
                   and f"127.0.0.2:{real_port}" in saru("ipvsadm", "-L", "-n", "--config", str(cf),
                                                         runtime=runtime_dir).stdout,
                   "the real in the proxy's table", process)
        plan = saru("plan", "-c", str(cf), runtime=runtime_dir)
        assert plan.returncode == 0, plan.stderr
        assert plan.stdout.splitlines()[1:] == ["# no changes"], plan.stdout
        assert plan.stdout.splitlines()[0].endswith("; proxy data plane)")
    finally:
        process.terminate()
        process.wait(20)


def test_stop_with_the_cf_stops_a_daemon_run_with_the_toml(daemon: Running, runtime_dir: Path) -> None:
    stopped = saru("stop", "-c", str(daemon.cf), runtime=runtime_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == f"stopped (pid {daemon.process.pid})\n"
    # `saru stop` returned only once the daemon was gone: nothing left to wait for
    assert daemon.process.poll() == 0
    assert not (runtime_dir / "rl.cf.sock").exists()
    assert not accepts(daemon.port)  # cleanstop: the proxy's virtual service was removed
    again = saru("stop", "-c", str(daemon.toml), runtime=runtime_dir)
    assert again.returncode == 3 and "cannot reach the daemon" in again.stderr
    assert saru("status", "-c", str(daemon.toml), runtime=runtime_dir).returncode == 3


def test_status_and_stop_find_the_demo_by_its_config(tmp_path: Path, runtime_dir: Path) -> None:
    port = free_port()
    env = {**os.environ, "SARU_RUNTIME_DIR": str(runtime_dir), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "demo.out"
    with log.open("w") as out:
        demo = subprocess.Popen([*SARU, "demo", "--port", str(port), "--dir", str(tmp_path / "demo"),
                                 "--duration", "60"], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, text=True, env=env)
    try:
        cf = tmp_path / "demo" / f"demo-{port}.cf"
        # the demo prints what to type once its director is ready (the port may accept a moment before)
        wait_until(lambda: f"status -c {cf}" in log.read_text(), "the demo's instructions", demo)
        assert accepts(port)
        status = saru("status", "-c", str(cf), runtime=runtime_dir)
        assert status.returncode == 0, status.stderr
        assert f"127.0.0.1:{port}" in status.stdout
        stopped = saru("stop", "-c", str(cf), runtime=runtime_dir)
        assert stopped.returncode == 0, stopped.stderr
        assert demo.wait(20) == 0  # the demo ends with its director, real servers cleaned up
    finally:
        if demo.poll() is None:
            demo.terminate()
            demo.wait(20)


def test_stop_times_out_on_a_daemon_that_does_not_exit(runtime_dir: Path) -> None:
    """A control socket that acknowledges ``stop`` but never goes away: exit 1 after --timeout.

    (A stand-in for a hung daemon — a real one cannot be made to ignore ``stop`` — serving the
    daemon's wire format; its pid 1 never exits either.)"""
    path = runtime_dir / "stuck.cf.sock"
    script = (
        "import json, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(sys.argv[1]); s.listen(8)\n"
        "while True:\n"
        "    c, _ = s.accept(); c.makefile().readline()\n"
        "    c.sendall(json.dumps({'ok': True, 'pid': 1, 'stopping': True}).encode() + b'\\n'); c.close()\n"
    )
    fake = subprocess.Popen([sys.executable, "-c", script, str(path)])
    try:
        wait_until(path.exists, "the fake socket", fake)
        started = time.monotonic()
        result = saru("stop", "--control", str(path), "--timeout", "1", runtime=runtime_dir)
        assert result.returncode == 1 and "still running after 1s" in result.stderr, result.stderr
        assert time.monotonic() - started < 15
    finally:
        fake.kill()
        fake.wait()


# -- item 5: check-config checks what run checks ---------------------------------------------------------


def test_check_config_refuses_the_scheduler_run_refuses(tmp_path: Path, runtime_dir: Path) -> None:
    cf = write_config(tmp_path, free_port(), scheduler="rrr")
    expected = f"{cf}:5: virtual 127.0.0.1:"
    for extra in ((), ("--dataplane", "proxy"), ("--dataplane", "nft"), ("--dataplane", "ipvs")):
        checked = saru("check-config", str(cf), *extra)
        assert checked.returncode == 2, (extra, checked.stdout, checked.stderr)
        assert expected in checked.stderr and "scheduler 'rrr' is not supported" in checked.stderr
        assert f"{cf}: 1 error" in checked.stderr
    ran = saru("run", "-c", str(cf), "--dataplane", "proxy", runtime=runtime_dir, timeout=30)
    assert ran.returncode == 2
    assert [line for line in ran.stderr.splitlines() if line.startswith(expected)] == \
        [line for line in saru("check-config", "-c", str(cf), "--dataplane", "proxy").stderr.splitlines()
         if line.startswith(expected)]


def test_check_config_uses_the_plane_of_the_toml_and_dataplane_option(tmp_path: Path) -> None:
    cf = tmp_path / "fwm.cf"
    cf.write_text("virtual=7\n\treal=127.0.0.2:80 masq\n\tchecktype=on\n")  # a firewall mark: no proxy
    toml = tmp_path / "saru.toml"
    toml.write_text('[director]\nconfig = "fwm.cf"\ndataplane = "proxy"\n')
    by_toml = saru("check-config", str(toml))
    assert by_toml.returncode == 2 and f"{cf}:1: virtual fwm:7: " in by_toml.stderr  # [director] dataplane
    assert "proxy data plane cannot serve fwm" in by_toml.stderr
    assert saru("check-config", str(cf), "--settings", str(toml)).returncode == 2
    on_nft = saru("check-config", "-c", str(toml), "--dataplane", "nft")  # the option beats the toml
    assert on_nft.returncode == 0, on_nft.stderr
    assert on_nft.stdout.endswith(f"{cf}: OK (1 virtual services, 1 real servers; data plane nft)\n")


def test_check_config_takes_c_like_the_other_commands(tmp_path: Path) -> None:
    cf = write_config(tmp_path, free_port())
    by_option = saru("check-config", "-c", str(cf), "--dataplane", "proxy")
    assert by_option.returncode == 0, by_option.stderr
    assert by_option.stdout == f"{cf}: OK (1 virtual services, 1 real servers; data plane proxy)\n"
    assert saru("check-config", str(cf), "--dataplane", "proxy").stdout == by_option.stdout
    neither = saru("check-config")
    assert neither.returncode == 2 and neither.stderr.startswith("usage: saru check-config")
    both = saru("check-config", str(cf), "-c", str(cf))
    assert both.returncode == 2 and both.stderr.startswith("usage: saru check-config")
    assert "not allowed with argument" in both.stderr


# -- item 8: small things ----------------------------------------------------------------------------------


def big_config(directory: Path, virtuals: int = 400) -> Path:
    path = directory / "big.cf"
    path.write_text("".join(f"virtual=127.0.0.1:{10000 + i}\n\treal=127.0.0.2:80 masq\n\tchecktype=on\n"
                            for i in range(virtuals)))
    return path


def test_output_into_a_closed_pipe_exits_quietly(tmp_path: Path, daemon: Running, runtime_dir: Path) -> None:
    cf = big_config(tmp_path)
    # the operator's pipeline: head reads three lines and exits while saru is still writing
    shell = subprocess.run(f"{' '.join(SARU)} check-config --json {cf} | head -3; echo \"rc=${{PIPESTATUS[0]}}\"",
                           shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60)
    assert shell.stdout.splitlines()[:2] == ["{", f'  "path": "{cf}",']
    assert shell.stdout.splitlines()[-1] == "rc=141"
    assert shell.stderr == ""
    # the reader is gone before saru writes anything (status, help): the same quiet exit
    env = {**os.environ, "SARU_RUNTIME_DIR": str(runtime_dir)}
    ldirectord = [sys.executable, "-m", "saru.cli.ldirectord"]
    for argv, status in (([*SARU, "status", "-c", str(daemon.toml)], 141),
                         ([*SARU, "status", "--json", "-c", str(daemon.cf)], 141),
                         ([*SARU, "--help"], 0),  # argparse ignores write errors of --help itself
                         ([*ldirectord, "--help"], 141), ([*ldirectord, str(daemon.cf), "status"], 141)):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            result = subprocess.run(argv, stdout=write_end, stderr=subprocess.PIPE, text=True,
                                    timeout=60, env=env, stdin=subprocess.DEVNULL)
        finally:
            os.close(write_end)
        assert (result.returncode, result.stderr) == (status, ""), argv


def every_command() -> list[list[str]]:
    """Every command and sub-command of ``saru``, as argv prefixes."""
    commands = []

    def walk(parser: object, prefix: list[str]) -> None:
        for action in getattr(parser, "_actions", []):
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                for name, sub in choices.items():
                    commands.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return commands


def test_help_texts_are_plain_text_and_describe_every_command() -> None:
    commands = every_command()
    for argv in [[], *commands]:
        result = saru(*argv, "--help")
        assert result.returncode == 0, (argv, result.stderr)
        assert "``" not in result.stdout, argv
        _, _, rest = result.stdout.partition("\n\n")
        description = rest.split("\n\n")[0]
        assert not description.startswith(("positional arguments", "options")), f"{argv}: no description"
    assert ["status"] in commands and ["stop"] in commands and ["cluster", "crm"] in commands
