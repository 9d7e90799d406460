"""``saru status``, ``saru reload`` and ``saru stop``: talk to a running daemon through its control socket.

Exit statuses: ``status`` 0 running and ready, 1 running but not ready (its first health checks are
running, or its table could not be programmed — ``NOT READY`` / ``TABLE NOT IN LINE WITH HEALTH``; the
status is printed all the same), 3 no daemon answers; ``reload`` 0 reloaded, 1 no daemon
answers, 2 the new configuration is invalid (the running one is kept); ``stop`` 0 stopped, 1 still
running after ``--timeout``, 3 no daemon answers (nothing to stop). All three exit 2 when ``-c`` /
``--settings`` name no daemon (an invalid saru.toml, one without ``[director] config``).

Why 1 for not ready: a script or a monitoring check (``saru status >/dev/null || alert``) asks
whether the director serves its configuration, and a daemon still starting, or one whose kernel
refuses its table, does not — as ``systemctl is-active`` fails while a unit is activating and an LSB
``status`` is non-zero unless the service is running. 3 stays "not running" (LSB). Alarms (panic
mode, local faults) and an HA backup node are states the daemon handles by design: exit 0, the text
says ``ALARM`` / ``HA BACKUP``. ``saru-ldirectord status`` keeps ldirectord's contract (0 whenever
the daemon runs and answers): Pacemaker's monitor maps anything else to a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from saru.cli.common import EXIT_BAD_TARGET, add_target_arguments, ask, target_of
from saru.control.codec import key_from_dict

STOP_TIMEOUT = 30.0  # seconds: a daemon's cleanstop (removing its virtual services) fits well within
STOP_POLL = 0.05


#: how many lines of a failed reload's diagnostics the text status shows
RELOAD_ERROR_LINES = 20


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="show virtual and real servers of a running daemon",
                       description="Show a running daemon's data plane, virtual and real servers (state, "
                                   "weight, connections, last check) and recent events. Exit 0 when it "
                                   "answers and is ready, 1 when it answers but is not ready (first health "
                                   "checks running, or its table not programmed: NOT READY / TABLE NOT IN "
                                   "LINE WITH HEALTH), 3 when no daemon answers on its control socket.")
    add_target_arguments(p)
    p.add_argument("--json", action="store_true", help="print the raw JSON document")
    p.set_defaults(func=status)
    p = sub.add_parser("reload", help="make a running daemon re-read its config",
                       description="Make a running daemon re-read its ldirectord.cf (and saru.toml), like "
                                   "SIGHUP. A new configuration with errors is refused and the running one "
                                   "kept (exit 2, diagnostics on stderr); exit 1 when no daemon answers.")
    add_target_arguments(p)
    p.set_defaults(func=reload)
    p = sub.add_parser("stop", help="stop a running daemon and wait until it is gone",
                       description="Ask a running daemon to stop (it removes the virtual services whose "
                                   "cleanstop is yes, like SIGTERM) and wait until it has exited. Exit 0 "
                                   "when it is gone, 1 when it is still running after --timeout, 3 when "
                                   "no daemon answers (nothing to stop).")
    add_target_arguments(p)
    p.add_argument("--timeout", type=float, default=STOP_TIMEOUT, metavar="S",
                   help=f"seconds to wait for the daemon to exit (default {STOP_TIMEOUT:g})")
    p.set_defaults(func=stop)


def status(args: argparse.Namespace) -> int:
    target = target_of(args, "saru status")
    if target is None:
        return EXIT_BAD_TARGET
    answer = ask(target, "status")
    if answer is None:
        return 3
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(render_status(answer))
    return EXIT_NOT_READY if not_ready(answer) else 0


#: ``saru status``: the daemon answers, but does not serve its configuration (see the module docstring)
EXIT_NOT_READY = 1


def not_ready(doc: dict[str, Any]) -> bool:
    """Whether the status says the table is not what the daemon means it to be: not ready yet (first
    checks running, table not programmed), or its last apply failed (``table_lines`` says which)."""
    return doc.get("ready") is False or bool(doc.get("apply_error"))


def reload(args: argparse.Namespace) -> int:
    target = target_of(args, "saru reload")
    if target is None:
        return EXIT_BAD_TARGET
    answer = ask(target, "reload")
    if answer is None:
        return 1
    if not answer.get("reloaded"):
        print("saru: the new configuration has errors; the running one is kept:", file=sys.stderr)
        for line in answer.get("errors", []):
            print(f"  {line}", file=sys.stderr)
        return 2
    for line in answer.get("warnings", []):
        print(line, file=sys.stderr)
    print("reloaded")
    return 0


def stop(args: argparse.Namespace) -> int:
    target = target_of(args, "saru stop")
    if target is None:
        return EXIT_BAD_TARGET
    before = ask(target, "status")  # which process to wait for
    if before is None:
        return 3
    pid = before.get("pid")
    if ask(target, "stop") is None:
        return 3 if not answers(target.control) else 1
    deadline = time.monotonic() + max(args.timeout, 0.0)
    while answers(target.control) or (isinstance(pid, int) and pid_alive(pid)):
        if time.monotonic() >= deadline:
            print(f"saru stop: the daemon (pid {pid}) is still running after {args.timeout:g}s",
                  file=sys.stderr)
            return 1
        time.sleep(STOP_POLL)
    print(f"stopped (pid {pid})")
    return 0


def answers(path: Path) -> bool:
    """Whether something still accepts connections on the control socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still exists (a zombie counts as gone: it has stopped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def _check_text(real: dict[str, Any]) -> str:
    last = real.get("last_check")
    if not last:
        return "-"
    age = time.time() - last["at"] if last.get("at") else None
    text = f"{'ok' if last['ok'] else 'FAIL'} {last['latency'] * 1000:.1f}ms"
    if last.get("message") and not last["ok"]:
        text += f" ({last['message']})"
    if age is not None:
        text += f" {age:.0f}s ago"
    return text


def _operator_text(real: dict[str, Any]) -> str:
    """``  [drained by operator]``, ``  [disabled by operator]``, ``  [weight 5 by operator]`` or ''."""
    override = real.get("operator")
    if not isinstance(override, dict):
        return ""
    state = override.get("state")
    word = {"drain": "drained", "disable": "disabled"}.get(str(state), f"weight {override.get('weight')}")
    return f"  [{word} by operator]"


def bgp_lines(bgp: dict[str, Any]) -> list[str]:
    """``BGP: AS65001 via bird (running)``, one line per neighbour's session and per VIP's route."""
    head = f"BGP: AS{bgp['asn']} router id {bgp['router_id']} via {bgp['daemon']}"
    head += " (running)" if bgp.get("running") else " (NOT RUNNING)"
    if bgp.get("draining"):
        head += ", draining"
    if bgp.get("error"):
        head += f" — {bgp['error']}"
    lines = [head]
    for n in bgp.get("neighbors", []):
        bfd = f", BFD {n['bfd']}" if n.get("bfd") is not None else ""
        lines.append(f"  neighbour {n['address']} AS{n['asn']}: {n['state']}{bfd}")
    for r in bgp.get("routes", []):
        med = f" (MED {r['med']})" if r.get("med") is not None else ""
        lines.append(f"  {r['vip']}: {r['state']}{med}")
    return lines


def ha_line(ha: dict[str, Any]) -> str:
    """One line: ``HA: MASTER (vrid 51 on eth0, priority 100/100) VIP 10.0.0.1/24 up — reason``."""
    state = ha["state"].upper()
    prio = f"priority {ha['effective_priority']}/{ha['priority']}"
    if ha["state"] == "backup" and ha.get("master"):
        state += f", master {ha['master']}"
    vips = " ".join(ha.get("vips", []))
    text = f"HA: {state} (vrid {ha['vrid']} on {ha['interface']}, {prio}) VIP {vips} {'up' if ha['vip_up'] else 'down'}"
    ping = ha.get("ping")
    if ping and ping.get("unreachable"):
        text += f"; upstream lost: {', '.join(ping['unreachable'])}"
    if ha.get("conflict"):
        c = ha["conflict"]
        text += f"; VIPcheck conflict: {c['address']} answered by {c['mac']}"
    if ha.get("split_brain"):
        text += "; SPLIT BRAIN"
    counted = {k: v for k, v in (ha.get("events") or {}).items() if v}
    if counted:
        text += " [" + " ".join(f"{k}={v}" for k, v in sorted(counted.items())) + "]"
    if ha.get("reason"):
        text += f" — {ha['reason']}"
    return text


def _ago(at: float) -> str:
    return f"{max(0.0, time.time() - at):.0f}s ago"


def table_lines(doc: dict[str, Any]) -> list[str]:
    """Whether the table is programmed, said plainly: nothing when all is well."""
    error = doc.get("apply_error")
    if doc.get("ready") is False:
        if error:
            return [f"NOT READY: table not programmed: {error['message']} "
                    f"(failing since {_ago(error['since'])}, {error['attempts']} attempts; retrying)"]
        return ["NOT READY: first health checks running"]
    if error:
        return [f"TABLE NOT IN LINE WITH HEALTH: last apply failed {_ago(error['at'])}: {error['message']} "
                f"(failing since {_ago(error['since'])}, {error['attempts']} attempts; retrying)"]
    return []


def _standby(doc: dict[str, Any]) -> str:
    """Why the services are out of the table by design (an HA node that is not master), or ''."""
    ha = doc.get("ha")
    if ha and ha.get("state") != "master":
        return f"HA {str(ha.get('state', '')).upper()}"
    return ""


def drift_line(drift: dict[str, Any]) -> str:
    """One line: whether the kernel's table is checked against what Saru applied, and what was found."""
    if not drift.get("checked"):
        return "drift: not checked (the proxy's table lives in Saru's memory; nothing else can change it)"
    every = f"every {drift['interval']:g}s and " if drift.get("interval") else ""
    text = f"drift: kernel table checked {every}on status/plan/reload; "
    if drift["count"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(drift["last_at"]))
        text += f"{drift['count']} found and repaired, last at {when}: {drift['last_detail']}"
        if drift.get("last_error"):
            text += f"; that repair FAILED: {drift['last_error']}"
    else:
        text += "none found"
    if drift.get("check_error"):
        text += f"; checking FAILS: {drift['check_error']}"
    return text


def alarm_lines(alarms: dict[str, Any] | None) -> list[str]:
    """``ALARM: …`` lines for the status's raised alarms (local faults, panic mode)."""
    if not alarms or not alarms.get("active"):
        return []
    lines = []
    faults = alarms.get("local_faults") or []
    if faults:
        reasons = sorted({f["reason"] for f in faults})
        lines.append(f"ALARM: local fault ({', '.join(reasons)}): {len(faults)} real(s) cannot be checked; "
                     "they keep their state")
    for key in alarms.get("panic") or []:
        lines.append(f"ALARM: panic mode for {key_from_dict(key)}: too many reals failed together; "
                     "its last known set is kept")
    return lines


def render_status(doc: dict[str, Any]) -> str:
    """The human table of ``saru status``."""
    lines = [
        f"saru {doc['version']} pid {doc['pid']} — {doc['config']}",
        f"data plane: {doc['dataplane']['name']} — {doc['dataplane']['reason']}",
    ]
    lines.extend(table_lines(doc))
    lines.extend(alarm_lines(doc.get("alarms")))
    if doc.get("ha"):
        lines.append(ha_line(doc["ha"]))
    if doc.get("bgp"):
        lines += bgp_lines(doc["bgp"])
    if doc.get("last_reload_error"):
        lines.append("last reload FAILED (running the previous config):")
        errors = doc["last_reload_error"].splitlines()
        lines.extend(f"  {line}" for line in errors[:RELOAD_ERROR_LINES])
        if len(errors) > RELOAD_ERROR_LINES:
            lines.append(f"  … and {len(errors) - RELOAD_ERROR_LINES} more (saru status --json shows them all)")
    backup = _standby(doc)
    out_marker = f"not in table ({backup})" if backup else "NOT IN TABLE"
    if doc.get("drift"):
        lines.append(drift_line(doc["drift"]))
    for v in doc["virtuals"]:
        fallback = ""
        if v["fallback"]:
            fallback = f"  fallback {v['fallback']} {'ACTIVE' if v['fallback_active'] else 'standby'}"
        lines.append("")
        lines.append(f"{v['protocol'].upper():4} {v['name']}  {v['scheduler']}  "
                     f"check {v['checktype']}/{v['service_type']}  conns {v['connections']}{fallback}"
                     f"{'' if v.get('in_table', True) else '  ' + out_marker}")
        header = f"  {'real server':<28} {'fwd':<5} {'weight':>9} {'state':<11} {'act/total':>11}  last check"
        lines.append(header)
        for r in v["reals"]:
            host = f"[{r['address']}]:{r['port']}" if ":" in r["address"] else f"{r['address']}:{r['port']}"
            weight = f"{r['weight'] if r['weight'] is not None else '-'}/{r['configured_weight']}"
            conns = f"{r['active_connections']}/{r['connections']}"
            missing = r["state"] == "up" and not r.get("in_table", True)
            lines.append(f"  {host:<28} {r['forward']:<5} {weight:>9} {r['state']:<11} {conns:>11}  "
                         f"{_check_text(r)}{'  ' + out_marker if missing else ''}{_operator_text(r)}")
    if doc.get("cluster_events"):
        lines.append("cluster events (Pacemaker):")
        lines.extend(f"  {e}" for e in doc["cluster_events"])
    if doc.get("events"):
        lines.append("")
        lines.append("recent events:")
        lines.extend(f"  {e}" for e in doc["events"][-10:])
    return "\n".join(lines)
