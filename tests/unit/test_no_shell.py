"""Every place Saru starts a program execs an argument vector: no shell ever sees a string from the
configuration (docs/security.md). The list of modules that start programs is fixed here, so that a new
one is reviewed (and added) on purpose; each user of ``saru.subproc`` is checked with real processes in
tests/integration/test_checks_external.py and test_commands.py."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

SARU = Path(__file__).resolve().parents[2] / "saru"

#: the modules that start programs, and why
STARTERS = {
    "subproc.py": "the runner of checks, callbacks, fallback commands, notify scripts, sendmail, firewall-cmd",
    "dataplane/nft/libnft.py": "nft -f - (only without libnftables)",
    "dataplane/nft/routes.py": "ip -j route get / ip -j addr",
    "dataplane/ipvs/plane.py": "modprobe -q ip_vs",
    "cli/demo.py": "saru demo's backends",
    "bgp/bird.py": "the BIRD daemon Saru manages ([bgp] manage = true): bird -f -c <file> -s <socket>",
    "checks/receive.py": "the receive-pattern worker: this Python with -c, matching risky patterns",
}
SHELL_CALLS = {"system", "popen", "create_subprocess_shell", "getoutput", "getstatusoutput"}
STARTING = {"subprocess": {"run", "Popen", "call", "check_call", "check_output"},
            "asyncio": {"create_subprocess_exec"},
            "os": {"execv", "execve", "execvp", "execvpe", "spawnv", "spawnvp", "posix_spawn", "posix_spawnp"}}


@functools.cache
def every_call() -> list[tuple[Path, ast.Call]]:
    """Every call in Saru's source, parsed once for both tests."""
    return [(path, node) for path in sorted(SARU.rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text(), str(path))) if isinstance(node, ast.Call)]


def name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def owner(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return func.value.id
    return ""


def test_no_shell_anywhere() -> None:
    found = []
    for path, call in every_call():
        shell = any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                    for k in call.keywords)
        if shell or (name(call) in SHELL_CALLS and owner(call) in ("os", "subprocess", "asyncio")):
            found.append(f"{path.relative_to(SARU)}:{call.lineno}")
        first = call.args[0] if call.args else None
        if isinstance(first, ast.List) and first.elts and isinstance(first.elts[0], ast.Constant) \
                and first.elts[0].value in ("sh", "bash", "/bin/sh", "/bin/bash"):
            found.append(f"{path.relative_to(SARU)}:{call.lineno} (a shell in argv)")
    assert found == []


def test_only_the_known_modules_start_programs() -> None:
    starters = set()
    for path, call in every_call():
        if name(call) in STARTING.get(owner(call), ()):
            starters.add(str(path.relative_to(SARU)))
    assert starters == set(STARTERS)
