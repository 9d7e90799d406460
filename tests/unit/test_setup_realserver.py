"""``saru realserver``'s pure plan and checklist, and its file half (``--no-runtime`` under a temporary root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from saru.cli.main import main
from saru.setup import sysctl
from saru.setup.realserver_prep import (
    SYSCTL_FILE,
    Seen,
    SetupError,
    Want,
    apply,
    check_items,
    parse_vips,
    plan,
    sysctl_file,
    undo,
)

WANT = Want(("192.168.5.55", "2001:db8::55"), "eth2", "networkd")
KEYS = ["net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.eth2.arp_ignore", "net.ipv4.conf.all.arp_announce",
        "net.ipv4.conf.eth2.arp_announce"]


def seen(lo: set[str] | None = None, values: dict[str, str | None] | None = None,
         files: dict[str, str | None] | None = None, boot: dict[str, str] | None = None) -> Seen:
    live = {key: "0" for key in KEYS} | (values or {})
    return Seen(frozenset(lo) if lo is not None else frozenset(), live, files or {},
                {sysctl.normalize(k): (v, "/etc/sysctl.d/99-other.conf") for k, v in (boot or {}).items()})


def test_parse_vips_accepts_hosts_and_refuses_networks() -> None:
    assert parse_vips(["192.168.5.55", "192.168.5.55/32", "2001:db8::1/128"]) == ("192.168.5.55", "2001:db8::1")
    for bad, message in (("192.168.5.55/24", "host address"), ("nonsense", "not an IP"),
                         ("127.0.0.1", "cannot be"), ("224.0.0.18", "cannot be")):
        with pytest.raises(SetupError, match=message):
            parse_vips([bad])
    with pytest.raises(SetupError, match="at least one"):
        parse_vips([])


def test_fresh_host_needs_every_step_in_the_guides_order() -> None:
    steps = plan(WANT, seen())
    assert [(s.kind, s.target) for s in steps] == [
        ("address", "192.168.5.55/32"), ("address", "2001:db8::55/128"),
        *(("sysctl", key) for key in KEYS),
        ("file", SYSCTL_FILE), ("file", "/etc/systemd/network/10-saru-realserver-lo.network")]
    assert not any(s.done for s in steps)
    assert [s.value for s in steps if s.kind == "sysctl"] == ["1", "1", "2", "2"]


def test_done_steps_and_stricter_values_count_as_done() -> None:
    files = {SYSCTL_FILE: sysctl_file(WANT)}
    steps = plan(WANT, seen({"192.168.5.55/32"}, {"net.ipv4.conf.all.arp_ignore": "2"}, files))
    done = {s.target for s in steps if s.done}
    assert done == {"192.168.5.55/32", "net.ipv4.conf.all.arp_ignore", SYSCTL_FILE}


def test_ipv6_only_needs_no_arp_sysctls() -> None:
    want = Want(("2001:db8::55",), None, "none")
    assert [(s.kind, s.target) for s in plan(want, seen())] == [("address", "2001:db8::55/128")]


def test_check_items_give_exact_fixes_and_boot_overrides() -> None:
    items = check_items(WANT, seen(boot={"net.ipv4.conf.all.arp_ignore": "0"}))
    by_name = {item.name: item for item in items}
    assert by_name["VIP 192.168.5.55/32 on lo"].fix == "ip addr add 192.168.5.55/32 dev lo"
    assert by_name["net.ipv4.conf.eth2.arp_announce = 2"].fix == "sysctl -w net.ipv4.conf.eth2.arp_announce=2"
    assert by_name["net.ipv4.conf.eth2.arp_announce = 2"].status == "missing"
    override = by_name["at boot: net.ipv4.conf.all.arp_ignore"]
    assert override.status == "warn" and "99-other.conf sets 0" in override.detail


def test_a_vip_on_the_nic_fails_the_check() -> None:
    base = seen({"192.168.5.55/32"})
    on_nic = Seen(base.lo, base.sysctls, base.files, elsewhere={"192.168.5.55": ("192.168.5.55/24 dev eth2",)})
    item = next(i for i in check_items(WANT, on_nic) if i.name == "VIP 192.168.5.55 only on lo")
    assert item.status == "fail" and item.fix == "ip addr del 192.168.5.55/24 dev eth2"


def test_vlan_interface_uses_the_slash_notation() -> None:
    text = sysctl_file(Want(("10.0.0.1",), "eth0.100", "none"))
    assert "net/ipv4/conf/eth0.100/arp_ignore = 1" in text


def test_files_only_apply_and_undo_restore_the_tree_exactly(tmp_path: Path) -> None:
    (tmp_path / "etc" / "systemd" / "network").mkdir(parents=True)
    own = tmp_path / "etc/sysctl.d/90-saru-realserver.conf"
    own.parent.mkdir(parents=True)
    own.write_text("# the operator's own file of that name\n")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    changes = apply(WANT, tmp_path, runtime=False)
    assert [c.text() for c in changes] == [f"wrote {SYSCTL_FILE} (replaced)",
                                           "wrote /etc/systemd/network/10-saru-realserver-lo.network (new file)"]
    network = (tmp_path / "etc/systemd/network/10-saru-realserver-lo.network").read_text()
    assert "[Match]\nName=lo\n" in network and "Address=192.168.5.55/32\nAddress=2001:db8::55/128\n" in network
    assert apply(WANT, tmp_path, runtime=False) == []
    undone = [c.text() for c in undo(tmp_path, runtime=False)]
    assert sorted(undone) == sorted([f"restored {SYSCTL_FILE} (its content before apply)",
                                     "removed /etc/systemd/network/10-saru-realserver-lo.network"])
    assert own.read_text() == "# the operator's own file of that name\n"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_undo_leaves_a_file_edited_after_apply(tmp_path: Path) -> None:
    want = Want(("10.0.0.1",), "eth0", "none")
    apply(want, tmp_path, runtime=False)
    (tmp_path / SYSCTL_FILE.lstrip("/")).write_text("edited\n")
    assert [c.text() for c in undo(tmp_path, runtime=False)] == [f"left {SYSCTL_FILE} (changed since apply wrote it)"]
    assert (tmp_path / SYSCTL_FILE.lstrip("/")).read_text() == "edited\n"


def test_cli_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["realserver", "apply", "--vip", "10.0.0.0/8", "--root", str(tmp_path)]) == 2
    assert "host address" in capsys.readouterr().err
    assert main(["realserver", "check", "--undo", "--vip", "10.0.0.1"]) == 2
    assert main(["realserver", "apply", "--no-runtime", "--vip", "10.0.0.1", "--root", str(tmp_path)]) == 2
    assert "--interface" in capsys.readouterr().err
    (tmp_path / "var/lib/saru").mkdir(parents=True)
    (tmp_path / "var/lib/saru/realserver.json").write_text("not json")
    assert main(["realserver", "apply", "--undo", "--root", str(tmp_path), "--no-runtime"]) == 2
    assert "not a saru state file" in capsys.readouterr().err
    assert (tmp_path / "var/lib/saru/realserver.json").read_text() == "not json"
