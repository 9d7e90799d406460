"""saru.toml input at the edges: deep nesting, NUL bytes, odd interface names, thousands of unknown
keys. Every one is a ``ConfigError`` with FILE:LINE (never a traceback), each problem on its own line."""

from __future__ import annotations

from pathlib import Path

import pytest

from saru.config.diagnostics import ConfigError
from saru.config.native import load_settings, parse_settings

HA = '[ha]\nvips = ["10.0.0.1/24"]\n'


def problems(text: str, path: str = "/etc/saru/saru.toml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, path)
    return [str(d) for d in caught.value.diagnostics]


@pytest.mark.parametrize("text", [
    "x = " + "[" * 5000 + "]" * 5000 + "\n",
    "x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n",
])
def test_deep_nesting_is_a_config_error(text: str) -> None:
    found = problems("# deep\n" + text)
    assert len(found) == 1
    assert found[0].startswith("/etc/saru/saru.toml:2: ") and "nested too deeply" in found[0], found


def test_deep_nesting_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "saru.toml"
    path.write_text("[director]\nconfig = " + "[" * 5000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value).startswith(f"{path}:2: ")


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ('[director]\nconfig = "a\\u0000b.cf"\n', 2, "[director] config: 'a\\x00b.cf' contains a NUL byte"),
    (HA + 'interface = "lo\\u0000x"\n', 3, "not a network interface name"),
    (HA + 'interface = "."\n', 3, "not a network interface name"),
    (HA + 'interface = ".."\n', 3, "not a network interface name"),
    (HA + 'interface = "eth0:1"\n', 3, "not a network interface name"),
    (HA + 'interface = "a\\tb"\n', 3, "not a network interface name"),
    (HA + 'interface = "eth/0"\n', 3, "not a network interface name"),
    (HA + 'interface = "' + "é" * 8 + '"\n', 3, "not a network interface name"),  # 16 bytes
    (HA + 'interface = "eth0"\nnotify = ["/bin/echo", "a\\u0000b"]\n', 4, "NUL byte"),
    (HA + 'interface = "eth0"\nnotify_master = "/bin/echo a\\u0000b"\n', 4, "NUL byte"),
    ('[ipvs.sync]\ninterface = "eth\\u00001"\n', 2, "not a network interface name"),
])
def test_bad_strings_are_refused(text: str, line: int, fragment: str) -> None:
    found = problems(text)
    assert found[0].startswith(f"/etc/saru/saru.toml:{line}: "), found
    assert fragment in found[0], found


@pytest.mark.parametrize("name", ["lo", "eth0", "br-lan.10", "e" * 15, "wlp0s20f3", "é" * 7])
def test_good_interface_names_pass(name: str) -> None:
    settings = parse_settings(HA + f'interface = "{name}"\n')
    assert settings.ha is not None and settings.ha.interface == name


def test_thousands_of_unknown_keys_each_get_their_own_line() -> None:
    """Every unknown key is reported at its own line, at the top level and in sections."""
    top = [f"junk{i} = {i}" for i in range(1500)]
    ha = [f"bogus{i} = {i}" for i in range(1500)]
    text = "\n".join([*top, "[ha]", 'interface = "eth0"', 'vips = ["10.0.0.1"]', *ha, "[cluster]", "prempt = 1"])
    found = problems(text, "s.toml")
    assert len(found) == 3001
    assert found[0].startswith("s.toml:1: junk0: unknown key")
    assert found[1499].startswith("s.toml:1500: junk1499: unknown key")
    assert found[1500].startswith("s.toml:1504: [ha] bogus0: unknown key")
    assert found[2999].startswith("s.toml:3003: [ha] bogus1499: unknown key")
    assert found[3000].startswith("s.toml:3005: [cluster] prempt: unknown key")


def test_unknown_key_lines_in_dotted_and_spaced_headers() -> None:
    text = '[ ha ]\ninterface = "eth0"\nvips = ["10.0.0.1"]\n[ ha . ping ]\nhosts = ["10.0.0.9"]\n  colour = 1\n'
    assert problems(text, "s.toml")[0].startswith("s.toml:6: [ha.ping] colour: unknown key")


@pytest.mark.parametrize("body", [
    "[director]\nconfig = " + "[" * 5000 + "]" * 5000 + "\n",
    '[director]\nconfig = "x\\u0000.cf"\n',
])
def test_check_config_exits_2_with_the_place(tmp_path: Path, body: str) -> None:
    import subprocess
    import sys

    path = tmp_path / "saru.toml"
    path.write_text(body)
    done = subprocess.run([sys.executable, "-m", "saru", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"{path}:2: ") and "Traceback" not in done.stderr
