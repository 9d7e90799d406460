"""The generated bash completion, run by a real bash: the function is called the way bash's
programmable completion calls it (``COMP_WORDS``/``COMP_CWORD`` set), and ``COMPREPLY`` is read back.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from saru.cli import ldirectord
from saru.cli.main import build_parser
from saru.docgen import cli_model
from tests.helpers import require

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "completion/saru.bash"
COMMANDS = cli_model.read(build_parser()).walk()

DRIVER = """
source "$SCRIPT" || exit 9
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
"$FUNCTION"
printf '%s\\n' "${COMPREPLY[@]}"
"""


def complete(*words: str, cwd: Path = REPO) -> list[str]:
    """What completing the last of ``words`` (the command line so far, split as bash splits it) offers."""
    require(shutil.which("bash") is not None, "bash not installed")
    function = "_saru_ldirectord" if words[0] == "saru-ldirectord" else "_saru"
    run = subprocess.run(["bash", "--norc", "--noprofile", "-c", DRIVER, "bash", *words], cwd=cwd,
                         env={"SCRIPT": str(SCRIPT), "FUNCTION": function, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=False, timeout=20)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    return [line for line in run.stdout.splitlines() if line]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "ldirectord.cf").write_text("")
    (tmp_path / "saru.toml").write_text("")
    (tmp_path / "logs").mkdir()
    return tmp_path


def test_both_commands_are_registered() -> None:
    require(shutil.which("bash") is not None, "bash not installed")
    script = f"source {SCRIPT} && complete -p saru saru-ldirectord"
    run = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout.splitlines() == ["complete -F _saru saru", "complete -F _saru_ldirectord saru-ldirectord"]


def test_subcommands() -> None:
    top = [c.path[0] for c in COMMANDS if len(c.path) == 1]
    assert complete("saru", "") == top
    assert complete("saru", "st") == ["status", "stop"]
    assert complete("saru", "cluster", "") == ["crm", "pcs", "log"]


@pytest.mark.parametrize("command", [c for c in COMMANDS if not c.subcommands], ids=lambda c: c.name)
def test_options_of_every_command(command: cli_model.Command) -> None:
    flags = [flag for argument in command.options for flag in argument.flags]
    assert complete("saru", *command.path, "-") == [f for f in flags if f.startswith("-")]


def test_options_of_status() -> None:
    assert complete("saru", "status", "--") == ["--help", "--config", "--settings", "--control", "--json"]
    assert complete("saru", "status", "-c", "x.cf", "--j") == ["--json"]


def test_file_completion_after_c(files: Path) -> None:
    assert sorted(complete("saru", "status", "-c", "", cwd=files)) == ["ldirectord.cf", "logs", "saru.toml"]
    assert complete("saru", "run", "--config", "sa", cwd=files) == ["saru.toml"]
    assert sorted(complete("saru", "check-config", "--settings", "l", cwd=files)) == ["ldirectord.cf", "logs"]


def test_directory_completion(files: Path) -> None:
    assert complete("saru", "demo", "--dir", "", cwd=files) == ["logs"]


def test_choices_of_an_option() -> None:
    assert complete("saru", "run", "--dataplane", "") == ["auto", "ipvs", "nft", "proxy"]
    assert complete("saru", "run", "--dataplane", "=", "n") == ["nft"]  # --dataplane=n, as bash splits it
    assert complete("saru", "realserver", "apply", "--netconf", "net") == ["networkd", "networkmanager",
                                                                           "network-scripts"]


def test_positional_arguments(files: Path) -> None:
    assert complete("saru", "realserver", "") == ["apply", "check"]
    # the option's value (nft) is not taken for the positional FILE
    assert sorted(complete("saru", "check-config", "--dataplane", "nft", "", cwd=files)) == \
        ["ldirectord.cf", "logs", "saru.toml"]
    # nothing positional left: the options
    assert "--vip" in complete("saru", "realserver", "apply", "")


def test_saru_ldirectord(files: Path) -> None:
    verbs = list(ldirectord.COMMANDS)
    offered = complete("saru-ldirectord", "", cwd=files)
    assert offered[:len(verbs)] == verbs and sorted(offered[len(verbs):]) == ["ldirectord.cf", "logs", "saru.toml"]
    assert complete("saru-ldirectord", "ldirectord.cf", "st", cwd=files) == ["start", "stop", "status"]
    assert complete("saru-ldirectord", "ldirectord.cf", "start", "", cwd=files) == []
    assert complete("saru-ldirectord", "--") == ["--debug", "--help", "--version"]
