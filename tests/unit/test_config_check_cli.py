"""``saru check-config``: exit codes, messages, ``--json`` shape (in-process and via the installed script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from saru.cli.main import main
from saru.config.json_view import config_to_dict
from saru.config.ldirectord import parse_text
from tests.unit.test_config_support import FakeResolver

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "packaging" / "examples" / "guide.cf"
SAMPLE = ROOT / "packaging" / "examples" / "ldirectord-sample.cf"
SARU = next(
    (p for p in (ROOT / ".venv" / "bin" / "saru", Path(sys.executable).parent / "saru") if p.exists()),
    ROOT / ".venv" / "bin" / "saru",
)

VIRTUAL_KEYS = {
    "protocol": str, "address": str, "port": int, "service": str, "checktype": str, "scheduler": str,
    "netmask": (str, type(None)), "persistent": (int, type(None)), "fwmark": (int, type(None)),
    "checkport": int, "request": str, "receive": str, "virtualhost": (str, type(None)),
    "checktimeout": float, "negotiatetimeout": float, "checkinterval": float, "failurecount": int,
    "quiescent": bool, "fallback": (dict, type(None)), "reals": list,
}  # fmt: skip
REAL_KEYS = {"address": str, "port": int, "forward": str, "weight": int, "request": str, "receive": str}


def write(tmp_path: Path, text: str, name: str = "ld.cf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_ok_line_and_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--dataplane", "proxy", str(GUIDE)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{GUIDE}: OK (1 virtual services, 2 real servers; data plane proxy)\n"
    assert err == ""


def test_warnings_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "virtual=127.0.0.1:8080\n\treal=127.0.0.2:8080 masq\n")
    assert main(["check-config", "--dataplane", "proxy", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: OK (1 virtual services, 1 real servers; data plane proxy)\n"
    assert err.startswith(f"{path}:1: warning: virtual 127.0.0.1:8080 is NEVER health-checked")


def test_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "virtual=10.0.0.1:80\n\tchecktype=on\n\treal=10.0.0.[2-5]:80 masq\n\tbogus=1\n")
    assert main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f'{path}:3: invalid real server "10.0.0.[2-5]:80 masq": ranges are written 10.0.0.2->10.0.0.5',
        f'{path}:4: unknown directive "bogus"',
        f"{path}: 2 errors",
    ]


def test_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "absent.cf")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"saru check-config: cannot read {tmp_path / 'absent.cf'}: no such file\n"
    assert main(["check-config", str(tmp_path)]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--json", str(GUIDE)]) == 0
    out, _ = capsys.readouterr()
    data = json.loads(out)
    assert set(data) >= {"globals", "virtuals"}
    g = data["globals"]
    assert g["checktimeout"] == 5 and g["checkinterval"] == 10 and g["autoreload"] is True
    assert g["logfile"] == "/var/log/ldirectord.log" and g["quiescent"] is False and g["fallback"] is None
    (v,) = data["virtuals"]
    for key, kind in VIRTUAL_KEYS.items():
        assert isinstance(v[key], kind), (key, v[key])
    assert (v["protocol"], v["address"], v["port"], v["fwmark"]) == ("tcp", "192.168.5.55", 80, None)
    assert (v["service"], v["checktype"], v["scheduler"], v["checkport"]) == ("http", "negotiate", "rr", 80)
    assert (v["request"], v["receive"]) == ("/haCheker/haCheck.html", "up and running")
    assert (v["checktimeout"], v["negotiatetimeout"], v["checkinterval"], v["failurecount"]) == (5, 5, 10, 1)
    assert v["fallback"] == {"address": "127.0.0.1", "port": 80, "forward": "gate"}
    assert v["quiescent"] is False
    for real in v["reals"]:
        for key, kind in REAL_KEYS.items():
            assert isinstance(real[key], kind), (key, real[key])
    assert [(r["address"], r["port"], r["forward"], r["weight"]) for r in v["reals"]] == [
        ("192.168.5.33", 80, "gate", 1),
        ("192.168.5.43", 80, "gate", 1),
    ]


def test_json_effective_values() -> None:
    text = (
        'virtual=192.0.2.1:8080\n\tservice=http\n\trequest="/v"\n\treceive="V"\n'
        '\treal=10.0.0.1:81 masq 3 "/own" "OWN" l:2 u:8\n\treal=10.0.0.2 masq\n'
        "virtual=9\n\tservice=https\n\treal=10.0.0.3 gate\n"
        "virtual=192.0.2.2:80\n\tchecktype=on\n"
    )
    data = config_to_dict(parse_text(text, resolver=FakeResolver()))
    a, fwm, empty = data["virtuals"]
    own, inherited = a["reals"]
    assert (own["request"], own["receive"], own["l"], own["u"], own["checkport"]) == ("/own", "OWN", 2, 8, 81)
    assert (inherited["request"], inherited["receive"], inherited["checkport"]) == ("/v", "V", 80)
    assert a["checkport"] == 81  # no checkport=: the first real's check port
    assert (fwm["protocol"], fwm["fwmark"], fwm["address"], fwm["port"], fwm["checkport"]) == (
        "fwm",
        9,
        "",
        0,
        443,
    )
    assert empty["checkport"] == 80 and empty["reals"] == []
    json.dumps(data)  # serialisable


def test_installed_script(tmp_path: Path) -> None:
    assert SARU.exists(), SARU
    ok = subprocess.run([str(SARU), "check-config", "--dataplane", "ipvs", str(SAMPLE)], capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"{SAMPLE}: OK (1 virtual services, 3 real servers; data plane ipvs)\n"
    as_json = subprocess.run(
        [str(SARU), "check-config", "--json", str(SAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert json.loads(as_json.stdout)["virtuals"][0]["virtualhost"] == "www.x.y.z"
    bad = write(tmp_path, "checktimeout=never\n")
    failed = subprocess.run([str(SARU), "check-config", str(bad)], capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2 and f"{bad}:1: invalid check timeout" in failed.stderr


EXAMPLE_SETTINGS = ROOT / "packaging" / "examples" / "saru.toml"


def test_settings_example_and_the_cf_it_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLE_SETTINGS)]) == 0
    out = capsys.readouterr().out
    assert "OK (settings; HA vrrp on eth0)" in out
    assert f"{GUIDE}: OK (1 virtual services, 2 real servers; data plane " in out and "(auto))" in out


def test_settings_json_has_both_documents(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--json", str(EXAMPLE_SETTINGS)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["settings"]["ha"]["vips"] == ["192.168.5.55/24"]
    assert document["settings"]["ha"]["ping"]["hosts"] == ["192.168.5.1"]
    assert document["config"]["virtuals"][0]["address"] == "192.168.5.55"


def test_bad_settings_exit_2_with_file_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[ha]\ninterface = "eth0"\nvips = ["10.0.0.1/24"]\npriority = 0\n', "saru.toml")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:4: [ha] priority: 0 is out of range (1-253)" in err
    assert f"{path}: 1 error" in err


def test_settings_naming_a_broken_cf_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cf = write(tmp_path, "virtual=10.0.0.1:80\n\treal=10.0.0.2:80 bogus\n")
    path = write(tmp_path, f'[director]\nconfig = "{cf.name}"\n', "saru.toml")
    assert main(["check-config", str(path)]) == 2
    assert f"{cf}:2:" in capsys.readouterr().err


STATELESS_CF = """\
virtual=192.168.6.240:80
\treal=192.168.7.11:80 masq
\tpersistent=60
\tchecktype=on
virtual=192.168.6.240:81
\treal=192.168.7.11:80 masq
\treal=127.0.0.1:80 masq
\tchecktype=on
virtual=1
\treal=192.168.7.12:80 masq
\tchecktype=on
virtual=192.168.6.240:82
\treal=192.168.6.11:82 gate
\tfallback=127.0.0.1:82 gate
\tchecktype=on
virtual=192.168.6.240:83
\treal=192.168.6.12:83 gate
\tpersistent=60
\tchecktype=on
"""


def test_stateless_nat_refusals_as_the_daemon_makes_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``[nft] nat = "stateless"`` in the saru.toml: check-config refuses what ``saru run`` and a
    reload refuse (the plane the daemon builds, its capabilities, the same ``unsupported``), each
    as FILE:LINE: message — and the same files with stateful NAT are fine."""
    from saru.config.ldirectord import parse_file
    from saru.dataplane.nft import NftDataplane
    from saru.dataplane.select import unsupported

    cf = write(tmp_path, STATELESS_CF)
    stateful = write(tmp_path, f'[director]\nconfig = "{cf.name}"\ndataplane = "nft"\n', "stateful.toml")
    assert main(["check-config", str(stateful)]) == 0
    capsys.readouterr()
    toml = write(tmp_path, stateful.read_text() + '[nft]\nnat = "stateless"\n', "saru.toml")
    assert main(["check-config", str(toml)]) == 2
    err = capsys.readouterr().err
    daemon = unsupported(parse_file(str(cf)), NftDataplane(nat="stateless").capabilities)
    lines = [line for line in err.splitlines() if line.startswith(f"{cf}:") and not line.endswith(" errors")]
    assert [str(d) for d in daemon] == lines
    assert f"{cf}:1: virtual 192.168.6.240:80: no persistence with [nft] nat = \"stateless\"" in err
    assert f"{cf}:6: real 192.168.7.11:80: also a real of virtual 192.168.6.240:80" in err
    assert f"{cf}:7: real 127.0.0.1:80: the director itself cannot be a real" in err
    assert f"{cf}:9: virtual fwm:1: firewall-mark virtuals cannot be NATed" in err
    assert f"{cf}:12: virtual 192.168.6.240:82: fallback 127.0.0.1:82 is the director itself" in err
    assert "192.168.6.240:83" not in err  # a direct-routed virtual keeps its persistence
    assert f"{cf}: 5 errors" in err
