"""``saru status`` text: whether the table is programmed is said plainly (pure rendering of the JSON)."""

from __future__ import annotations

import time
from typing import Any

from saru.cli.daemon_cmds import not_ready, render_status


def doc(ready: bool = True, apply_error: dict[str, Any] | None = None, in_table: bool = True,
        ha: dict[str, Any] | None = None) -> dict[str, Any]:
    real = {"address": "10.0.0.2", "port": 80, "forward": "masq", "configured_weight": 1,
            "weight": 1 if in_table else None, "in_table": in_table, "state": "up", "failures": 0,
            "active_connections": 0, "connections": 0, "last_check": None}
    down = {**real, "address": "10.0.0.3", "state": "down", "weight": None, "in_table": False}
    return {
        "version": "0", "pid": 1, "config": "/etc/ha.d/x.cf",
        "dataplane": {"name": "proxy", "reason": "test"},
        "ready": ready, "apply_error": apply_error, "last_reload_error": None, "ha": ha,
        "virtuals": [{"service": {"protocol": "tcp", "address": "10.0.0.1", "port": 80, "fwmark": None,
                                  "family": 4}, "name": "10.0.0.1:80", "protocol": "tcp",
                      "scheduler": "rr", "checktype": "on", "service_type": "http", "in_table": in_table,
                      "fallback": None, "fallback_active": False, "connections": 0, "reals": [real, down]}],
        "events": [], "cluster_events": [],
    }


def error() -> dict[str, Any]:
    """An apply error whose run began 12 s ago, latest failure 1 s ago (times taken now)."""
    return {"message": "tcp 10.0.0.1:80: cannot listen on 10.0.0.1:80: Address already in use",
            "since": time.time() - 12.2, "at": time.time() - 1.2, "attempts": 12}


def lines_with(text: str, part: str) -> list[str]:
    return [line for line in text.splitlines() if part in line]


def test_all_well_says_nothing_extra() -> None:
    text = render_status(doc())
    assert "NOT READY" not in text and "NOT IN TABLE" not in text and "NOT IN LINE" not in text


def test_not_ready_with_the_error_and_markers() -> None:
    text = render_status(doc(ready=False, apply_error=error(), in_table=False))
    assert lines_with(text, "NOT READY") == [
        "NOT READY: table not programmed: tcp 10.0.0.1:80: cannot listen on 10.0.0.1:80: Address already "
        "in use (failing since 12s ago, 12 attempts; retrying)"]
    assert lines_with(text, "TCP  10.0.0.1:80")[0].endswith("NOT IN TABLE")
    assert lines_with(text, "10.0.0.2:80")[0].endswith("NOT IN TABLE")  # up, yet not in the table
    assert not lines_with(text, "10.0.0.3:80")[0].endswith("NOT IN TABLE")  # down: out by design


def test_not_ready_without_error_is_the_first_health_pass() -> None:
    assert "NOT READY: first health checks running" in render_status(doc(ready=False, in_table=False))


def test_failure_after_start() -> None:
    text = render_status(doc(apply_error=error()))
    line = lines_with(text, "TABLE NOT IN LINE WITH HEALTH")
    assert line and "last apply failed 1s ago" in line[0] and "12 attempts" in line[0]
    assert "NOT READY" not in text


def test_ha_backup_out_of_table_by_design() -> None:
    ha = {"state": "backup", "priority": 100, "effective_priority": 100, "vrid": 51, "interface": "eth0",
          "vips": ["10.0.0.1/24"], "vip_up": False}
    text = render_status(doc(in_table=False, ha=ha))
    assert "NOT IN TABLE" not in text
    assert lines_with(text, "TCP  10.0.0.1:80")[0].endswith("not in table (HA BACKUP)")


def test_older_daemon_without_the_fields() -> None:
    old = doc()
    del old["apply_error"], old["virtuals"][0]["in_table"]
    assert "NOT" not in render_status(old)


def test_a_huge_failed_reload_is_cut_to_a_screenful_with_a_count() -> None:
    problems = "\n".join(f"/etc/ha.d/x.cf:{n}: unknown directive 'x{n}'" for n in range(1, 20001))
    text = render_status({**doc(), "last_reload_error": problems})
    assert "/etc/ha.d/x.cf:20: unknown" in text and "/etc/ha.d/x.cf:21: unknown" not in text
    assert "… and 19980 more (saru status --json shows them all)" in text
    assert len(text.splitlines()) < 60


def test_alarms_are_said_first_thing() -> None:
    key = {"protocol": "tcp", "address": "10.0.0.1", "port": 80, "fwmark": None, "family": 4}
    alarms = {"active": True, "panic": [key],
              "local_faults": [{"service": key, "address": "10.0.0.2", "port": 80, "reason": "emfile"}]}
    text = render_status({**doc(), "alarms": alarms})
    assert lines_with(text, "ALARM: local fault (emfile): 1 real(s) cannot be checked")
    assert lines_with(text, "ALARM: panic mode for tcp 10.0.0.1:80")
    quiet = render_status({**doc(), "alarms": {"active": False, "panic": [], "local_faults": []}})
    assert "ALARM" not in quiet


def test_status_exit_says_whether_the_daemon_serves_its_configuration() -> None:
    """``saru status``'s exit: 1 while not ready (first checks, table not programmed) or while its last
    apply failed; 0 otherwise, alarms and an HA backup included (they are handled by design)."""
    error = {"message": "Address already in use", "at": 0.0, "since": 0.0, "attempts": 2}
    assert not_ready({"ready": False}) and not_ready({"ready": False, "apply_error": error})
    assert not_ready({"ready": True, "apply_error": error})
    assert not not_ready({"ready": True, "apply_error": None, "ha": {"state": "backup"},
                          "alarms": {"active": True, "local_faults": [], "panic": [{"protocol": "tcp"}]}})
