"""external and external-perl checks with real sh and perl scripts written by the tests."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from saru.checks.base import run_check
from saru.checks.spec import check_spec_for
from saru.model import CheckSpec, RealConfig, VirtualConfig
from tests.helpers import require
from tests.helpers import wait_process_gone as wait_gone


def script(directory: Path, name: str, body: str, shebang: str = "#!/bin/sh") -> Path:
    path = directory / name
    path.write_text(f"{shebang}\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def external(command: str | Path, timeout: float = 2.0, checktype: str = "external", *,
             vip: str = "127.0.0.10", vport: int = 80, rip: str = "127.0.0.1",
             rport: int = 8080) -> CheckSpec:
    return CheckSpec(checktype, "none", "tcp", rip, rport, checkcommand=str(command), checktimeout=timeout,
                     virtual_address=vip, virtual_port=vport)


# ---- external ------------------------------------------------------------------------------------


async def test_exit_zero_is_up(tmp_path):
    result = await run_check(external(script(tmp_path, "ok", "exit 0")))
    assert (result.ok, result.message) == (True, "exit status 0")


async def test_exit_one_is_down_with_the_last_stderr_line(tmp_path):
    body = "echo noise; echo 'first' >&2; echo 'backend answered 503' >&2; exit 1"
    result = await run_check(external(script(tmp_path, "down", body)))
    assert (result.ok, result.message) == (False, "exit status 1: backend answered 503")


async def test_the_four_arguments_are_received(tmp_path):
    out = tmp_path / "received"
    check = script(tmp_path, "args", f'for a in "$@"; do echo "$a"; done > {out}')
    assert (await run_check(external(check))).ok
    assert out.read_text().splitlines() == ["127.0.0.10", "80", "127.0.0.1", "8080"]


async def test_arguments_for_fwmark_and_ipv6_as_ldirectord_passes_them(tmp_path):
    out = tmp_path / "received"
    check = script(tmp_path, "args", f'echo "$@" > {out}')
    fwm = VirtualConfig(protocol="fwm", address="", port=0, fwmark=5, checktype="external",
                        checkcommand=str(check), reals=(RealConfig("127.0.0.1", 0),))
    assert (await run_check(check_spec_for(fwm, fwm.reals[0]))).ok
    assert out.read_text() == "5 0 127.0.0.1 0\n"
    assert (await run_check(external(check, vip="2001:db8::1", rip="::1", rport=443))).ok
    assert out.read_text() == "[2001:db8::1] 80 [::1] 443\n"


async def test_no_shell_interpretation(tmp_path):
    out, marker = tmp_path / "received", tmp_path / "marker"
    check = script(tmp_path, "args", f'for a in "$@"; do echo "$a"; done > {out}')
    command = f"{check} 'a; touch {marker}' '$HOME' `id`"
    assert (await run_check(external(command))).ok
    assert out.read_text().splitlines()[:3] == [f"a; touch {marker}", "$HOME", "`id`"]
    assert not marker.exists()


async def test_a_command_with_arguments_is_split_shell_style(tmp_path):
    out = tmp_path / "received"
    check = script(tmp_path, "args", f'echo "$#:$1:$2" > {out}')
    assert (await run_check(external(f'{check} --mode "two words"'))).ok
    assert out.read_text() == "6:--mode:two words\n"


async def test_a_program_path_with_spaces_still_works_as_in_ldirectord(tmp_path):
    (tmp_path / "my checks").mkdir()
    check = script(tmp_path / "my checks", "run check", "exit 0")
    assert (await run_check(external(check))).ok


async def test_a_missing_program_is_down(tmp_path):
    result = await run_check(external(tmp_path / "nope"))
    assert (result.ok, result.message) == (False, f"cannot execute {tmp_path / 'nope'}: no such file")


async def test_killed_by_a_signal_is_down(tmp_path):
    result = await run_check(external(script(tmp_path, "kill", "kill -9 $$")))
    assert (result.ok, result.message) == (False, "killed by SIGKILL")


async def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    body = f"sleep 60 & echo $! > {pidfile}; echo 'still waiting' >&2; wait"
    result = await run_check(external(script(tmp_path, "hang", body), timeout=0.5))
    assert not result.ok
    assert result.message.startswith("timeout after 0.5s")
    assert 0.45 <= result.latency < 0.9
    child = int(pidfile.read_text())
    assert await wait_gone(child, 3.0), "the command's child survived the timeout"


async def test_timeout_kills_children_that_ignore_sigterm(tmp_path):
    pidfile = tmp_path / "child.pid"
    body = f"trap '' TERM; sleep 60 & echo $! > {pidfile}; wait"
    result = await run_check(external(script(tmp_path, "stubborn", body), timeout=0.3))
    assert (result.ok, result.message) == (False, "timeout after 0.3s")
    assert result.latency < 0.7
    assert await wait_gone(int(pidfile.read_text()), 4.0), "SIGKILL after the grace did not come"


async def test_children_left_behind_neither_delay_the_result_nor_survive(tmp_path):
    pidfile = tmp_path / "child.pid"
    body = f"sleep 60 & echo $! > {pidfile}; echo bye; exit 0"  # the child keeps stdout open
    result = await run_check(external(script(tmp_path, "leaves", body), timeout=5))
    assert (result.ok, result.message) == (True, "exit status 0")
    assert result.latency < 1.0
    assert await wait_gone(int(pidfile.read_text()), 3.0)


async def test_large_output_is_capped_and_does_not_block(tmp_path):
    body = "head -c 2000000 /dev/zero | tr '\\0' x; echo; echo 'tail line' >&2; exit 3"
    result = await run_check(external(script(tmp_path, "chatty", body), timeout=5))
    assert (result.ok, result.message) == (False, "exit status 3: tail line")


# ---- external-perl -------------------------------------------------------------------------------


@pytest.fixture
def perl() -> None:
    require(shutil.which("perl") is not None, "perl is not installed")


def perl_file(directory: Path, body: str) -> Path:
    path = directory / "check.pl"
    path.write_text(body)  # not executable: run by perl, as ldirectord reads it
    return path


async def test_perl_exit_zero_is_up_and_receives_the_arguments(tmp_path, perl):
    out = tmp_path / "received"
    body = f'open(my $f, ">", "{out}") or die; print $f join("|", @ARGV), "\\n"; close $f; exit 0;\n'
    result = await run_check(external(perl_file(tmp_path, body), checktype="external-perl"))
    assert (result.ok, result.message) == (True, "exit status 0")
    assert out.read_text() == "127.0.0.10|80|127.0.0.1|8080\n"


async def test_perl_falling_off_the_end_is_up(tmp_path, perl):
    result = await run_check(external(perl_file(tmp_path, "my $x = 1;\n"), checktype="external-perl"))
    assert result.ok


async def test_perl_exit_one_and_die_are_down(tmp_path, perl):
    result = await run_check(external(perl_file(tmp_path, "exit 1;\n"), checktype="external-perl"))
    assert (result.ok, result.message) == (False, "exit status 1")
    dies = perl_file(tmp_path, 'die "backend gone\\n";\n')
    result = await run_check(external(dies, checktype="external-perl"))
    assert (result.ok, result.message) == (False, "exit status 255: backend gone")


async def test_perl_missing_file_is_down(tmp_path, perl):
    result = await run_check(external(tmp_path / "missing.pl", checktype="external-perl"))
    assert not result.ok
    assert result.message.startswith("exit status 2: Can't open perl script")


async def test_perl_timeout_kills_the_group(tmp_path, perl):
    pidfile = tmp_path / "child.pid"
    body = (f'my $pid = fork(); if ($pid == 0) {{ exec("sleep", "60"); }}\n'
            f'open(my $f, ">", "{pidfile}"); print $f "$pid\\n"; close $f; sleep 60;\n')
    result = await run_check(external(perl_file(tmp_path, body), checktype="external-perl", timeout=0.5))
    assert not result.ok and result.message.startswith("timeout after 0.5s")
    assert 0.45 <= result.latency < 0.9
    assert await wait_gone(int(pidfile.read_text()), 3.0)
