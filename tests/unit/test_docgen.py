"""The man pages and the bash completion cannot drift from what they describe.

The committed files under man/ and completion/ must be exactly what ``python -m saru.docgen`` makes
from the argument parser, ``saru.cli.ldirectord``'s tables and docs/settings.md (``make man
completion`` regenerates them); the settings reference must list exactly the keys saru.toml's reader
accepts (found by asking the reader itself), with the defaults it applies; every environment variable
Saru reads must be in a man page; and the pages must render without a groff warning.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import shutil
import string
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from saru import model
from saru.cli import ldirectord
from saru.cli.main import build_parser
from saru.config import native
from saru.config.diagnostics import ConfigError
from saru.docgen import __main__ as docgen
from saru.docgen import cli_model, roff, saru_page, settings_page
from tests.helpers import require

REPO = Path(__file__).resolve().parents[2]
PAGES = ("man/saru.8", "man/saru-ldirectord.8", "man/saru.toml.5")
PROBE = "zz_probe_zz"
ENV = {**os.environ, "LC_ALL": "C.UTF-8"}


def test_committed_files_are_what_the_sources_give() -> None:
    stale = docgen.stale(REPO)
    assert not stale, f"out of date: {', '.join(stale)} — run `make man completion` and commit the result"


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    """``python -m saru.docgen --check`` (what the test above relies on) notices a one-character change."""
    tree = tmp_path / "tree"
    for name in ("docs/settings.md", "packaging/examples/saru.toml"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tree / name)
    assert docgen.main(["--root", str(tree)]) == 0
    assert docgen.main(["--root", str(tree), "--check"]) == 0
    page = tree / "man/saru.8"
    page.write_text(page.read_text().replace("saru run", "saru rum", 1))
    assert docgen.main(["--root", str(tree), "--check"]) == 1
    assert docgen.stale(tree) == ["man/saru.8"]


def test_saru_page_has_every_command_and_option() -> None:
    page = (REPO / "man/saru.8").read_text()
    root = cli_model.read(build_parser())
    commands = root.walk()[1:]
    assert len(commands) >= 16  # 13 commands + cluster's crm, pcs, log
    for command in commands:
        assert f'.SS "{roff.text(command.name)}"' in page
        for argument in command.options:
            for flag in argument.flags:
                assert roff.bold(flag) in page, f"{command.name} {flag}"


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_warnings(page: str) -> None:
    require(shutil.which("groff") is not None and shutil.which("man") is not None,
            "groff and man not installed (make deps installs man-db, groff-base)")
    path = REPO / page
    for device in ("ascii", "utf8"):
        run = subprocess.run(["groff", "-ww", "-man", f"-T{device}", "-z", str(path)],
                             capture_output=True, text=True, check=False, env=ENV)
        assert run.returncode == 0 and run.stderr == "", f"groff -T{device}: {run.stderr}"
    run = subprocess.run(["man", "--warnings", "-l", str(path)], capture_output=True, text=True, check=False,
                         env={**ENV, "MANWIDTH": "80"})
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert "NAME" in run.stdout and "SEE ALSO" in run.stdout


# --------------------------------------------------------------------------------------------------
# saru.toml(5): the reference against the reader
# --------------------------------------------------------------------------------------------------


def accepted_keys() -> dict[str, set[str]]:
    """``{"": {"director", …}, "ha.ping": {"hosts", …}}``: what ``parse_settings`` accepts, learnt by
    giving it an unknown key in every table (its error lists the known ones) and descending into
    every known key that is itself a table."""
    found: dict[str, set[str]] = {}
    todo = [""]
    while todo:
        section = todo.pop()
        keys = _known_keys(section)
        if keys is None:
            continue
        found[section] = keys
        todo += [f"{section}.{key}" if section else key for key in keys]
    return found


def _known_keys(section: str) -> set[str] | None:
    text = (f"[{section}]\n" if section else "") + f"{PROBE} = 1\n"
    try:
        native.parse_settings(text)
    except ConfigError as exc:
        for diagnostic in exc.diagnostics:
            match = re.search(rf"\b{PROBE}: unknown key.*; known keys: (.+)$", diagnostic.message)
            if match:
                return set(match.group(1).split(", "))
        return None
    return None


def test_the_probe_finds_what_the_reader_accepts() -> None:
    keys = accepted_keys()
    assert keys[""] == {"director", "ha", "ipvs", "nft", "cluster", "checks", "api", "bgp"}
    assert keys["ipvs"] == {"sync"}
    assert "hosts" in keys["ha.ping"] and "ping" in keys["ha"] and "config" in keys["director"]


def test_settings_reference_lists_exactly_the_accepted_keys() -> None:
    documented = settings_page.documented_keys((REPO / settings_page.REFERENCE).read_text())
    accepted = accepted_keys()
    for section in sorted(set(documented) | set(accepted)):
        missing = accepted.get(section, set()) - documented.get(section, set())
        unknown = documented.get(section, set()) - accepted.get(section, set())
        where = f"[{section}]" if section else "the top level"
        assert not missing, f"docs/settings.md does not document {sorted(missing)} of {where}"
        assert not unknown, f"docs/settings.md documents {sorted(unknown)} in {where}, which saru.toml refuses"


DATACLASSES: dict[str, Any] = {
    "director": model.DirectorSettings, "ha": model.HASettings, "ha.ping": model.PingSettings,
    "ipvs.sync": model.IPVSSyncSettings, "nft": model.NftSettings, "cluster": model.ClusterSettings,
    "checks": model.CheckSettings, "api": model.APISettings, "bgp": model.BGPSettings,
    "bgp.neighbors": model.BGPNeighbor,
}


def test_settings_reference_defaults_are_the_readers() -> None:
    """Every default the reference gives as a value (``51``, ``"auto"``, ``false``, ``[]``, a bare
    resource name) is the dataclass default the reader applies."""
    from saru.docgen import markdown

    section, compared = None, 0
    for block in markdown.blocks((REPO / settings_page.REFERENCE).read_text()):
        if isinstance(block, markdown.Heading):
            match = re.match(r"`\[([\w.]+)\]`", block.text)
            section = match.group(1) if match else None
        elif isinstance(block, markdown.Table) and section in DATACLASSES and "default" in block.header:
            fields = {f.name: f for f in dataclasses.fields(DATACLASSES[section])}
            for row in block.rows:
                cells = dict(zip(block.header, row, strict=False))
                keys = re.findall(r"`(\w+)`", cells["key"])
                values = [v.strip() for v in cells["default"].split(",")] if len(keys) > 1 else [cells["default"]]
                if len(values) != len(keys):
                    continue
                for key, value in zip(keys, values, strict=True):
                    expected = _documented_value(value)
                    if expected is None:
                        continue
                    actual = fields[key].default
                    actual = list(actual) if isinstance(actual, tuple) else actual
                    assert actual == expected, f"[{section}] {key}: documented {value}, reader default {actual!r}"
                    compared += 1
    assert compared >= 35


def _documented_value(text: str) -> Any:
    """The value a default cell states, or None when it states none (``—``, ``required``, prose)."""
    text = text.strip().strip("`")
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text if re.fullmatch(r"[A-Za-z_][\w]*", text) and text != "required" else None


# --------------------------------------------------------------------------------------------------
# environment variables and saru-ldirectord's options
# --------------------------------------------------------------------------------------------------


def _saru_variables(path: Path) -> set[str]:
    """``SARU_*`` names used as string constants in a module (docstrings excluded)."""
    tree = ast.parse(path.read_text())
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and re.fullmatch(r"SARU_[A-Z0-9_]+", node.value)}


def test_every_environment_variable_is_documented() -> None:
    saru_documented = {name for name, _ in saru_page.ENVIRONMENT}
    ldirectord_documented = {name for name, _ in ldirectord.ENVIRONMENT}
    ldirectord_module = REPO / "saru/cli/ldirectord.py"
    for path in sorted((REPO / "saru").rglob("*.py")):
        used = _saru_variables(path)
        documented = ldirectord_documented if path == ldirectord_module else saru_documented
        assert used <= documented, f"{path.relative_to(REPO)} reads {sorted(used - documented)}: add to its man page"
    assert _saru_variables(ldirectord_module) == ldirectord_documented


def test_saru_ldirectord_options_are_the_documented_ones() -> None:
    documented = {s for term, _ in ldirectord.OPTIONS if term.startswith("-") for s in term.split("|")}
    letters = {s[1] for s in documented if not s.startswith("--")}
    for char in string.ascii_letters + string.digits + "?!@#%":
        try:
            accepted = ldirectord.parse_argv([f"-{char}", "status"]) is not None
        except ldirectord.UsageError:
            accepted = False
        assert accepted == (char in letters), f"-{char}"
    for spelling in documented - {f"-{c}" for c in letters}:
        assert ldirectord.parse_argv([spelling, "status"]) is not None, spelling
    assert {verb for verb, _ in ldirectord.VERBS} == set(ldirectord.COMMANDS)
