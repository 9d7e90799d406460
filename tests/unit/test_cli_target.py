"""``saru.cli.target``: ``-c`` an ldirectord.cf or a saru.toml names the same daemon (pure path logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from saru.cli.target import TargetError, resolve_target, split_files
from saru.config.diagnostics import ConfigError


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("SARU_RUNTIME_DIR", str(tmp_path / "run"))
    cf = tmp_path / "etc" / "rl.cf"
    cf.parent.mkdir()
    cf.write_text("virtual=127.0.0.1:80\n\treal=127.0.0.2:80 masq\n")
    toml = tmp_path / "etc" / "rl.toml"
    toml.write_text('[director]\nconfig = "rl.cf"\ndataplane = "proxy"\n')
    return cf, toml


def test_toml_and_cf_resolve_to_the_same_socket(files: tuple[Path, Path], tmp_path: Path) -> None:
    cf, toml = files
    by_toml = resolve_target(str(toml))
    by_cf = resolve_target(str(cf))
    assert by_toml.control == by_cf.control == tmp_path / "run" / "rl.cf.sock"
    assert by_toml.config == by_cf.config == str(cf)  # the ldirectord.cf the toml names, made absolute
    assert (by_toml.settings_path, by_toml.dataplane) == (str(toml), "proxy")
    assert (by_cf.settings_path, by_cf.dataplane) == (None, "auto")
    # -c cf --settings toml: what `saru run -c cf --settings toml` runs, on the same socket
    both = resolve_target(str(cf), str(toml))
    assert (both.config, both.settings_path, both.control) == (str(cf), str(toml), by_cf.control)


def test_control_overrides_and_default_instance(files: tuple[Path, Path], tmp_path: Path) -> None:
    _, toml = files
    assert resolve_target(str(toml), control="/x/y.sock").control == Path("/x/y.sock")
    assert resolve_target(None).control == tmp_path / "run" / "ldirectord.cf.sock"  # no -c: the default one
    with pytest.raises(TargetError, match=r"no ldirectord\.cf given"):
        resolve_target(None, require_config=True)


def test_toml_naming_no_cf_and_two_tomls_are_refused(files: tuple[Path, Path], tmp_path: Path) -> None:
    cf, toml = files
    bare = tmp_path / "etc" / "bare.toml"
    bare.write_text("")
    with pytest.raises(TargetError, match=r"bare.toml: \[director\] config is not set.*--control"):
        resolve_target(str(bare))  # status/stop: would otherwise silently ask the default instance
    assert resolve_target(str(bare), control="/s.sock").control == Path("/s.sock")
    with pytest.raises(TargetError, match="director\\] config is not set"):
        resolve_target(str(bare), control="/s.sock", require_config=True)  # run/plan need the cf
    with pytest.raises(TargetError, match="second one"):
        split_files(str(toml), str(bare))
    assert split_files(str(toml), str(toml)) == (None, str(toml))
    assert split_files(str(cf), None) == (str(cf), None)


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[director]\nconfig = 3\n")
    with pytest.raises(ConfigError, match=f"{bad}:2:"):
        resolve_target(str(bad))
