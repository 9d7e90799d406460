"""``saru status`` and ``saru reload``: talk to a running daemon through its control socket."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from saru.cli.common import add_target_arguments, ask


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="show virtual and real servers of a running daemon")
    add_target_arguments(p)
    p.add_argument("--json", action="store_true", help="print the raw JSON document")
    p.set_defaults(func=status)
    p = sub.add_parser("reload", help="make a running daemon re-read its config")
    add_target_arguments(p)
    p.set_defaults(func=reload)


def status(args: argparse.Namespace) -> int:
    answer = ask(args, "status")
    if answer is None:
        return 3
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(render_status(answer))
    return 0


def reload(args: argparse.Namespace) -> int:
    answer = ask(args, "reload")
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


def render_status(doc: dict[str, Any]) -> str:
    """The human table of ``saru status``."""
    lines = [
        f"saru {doc['version']} pid {doc['pid']} — {doc['config']}",
        f"data plane: {doc['dataplane']['name']} — {doc['dataplane']['reason']}",
    ]
    if doc.get("ha"):
        lines.append(ha_line(doc["ha"]))
    if doc.get("last_reload_error"):
        lines.append("last reload FAILED (running the previous config):")
        lines.extend(f"  {line}" for line in doc["last_reload_error"].splitlines())
    for v in doc["virtuals"]:
        fallback = ""
        if v["fallback"]:
            fallback = f"  fallback {v['fallback']} {'ACTIVE' if v['fallback_active'] else 'standby'}"
        lines.append("")
        lines.append(f"{v['protocol'].upper():4} {v['name']}  {v['scheduler']}  "
                     f"check {v['checktype']}/{v['service_type']}  conns {v['connections']}{fallback}")
        header = f"  {'real server':<28} {'fwd':<5} {'weight':>9} {'state':<11} {'act/total':>11}  last check"
        lines.append(header)
        for r in v["reals"]:
            host = f"[{r['address']}]:{r['port']}" if ":" in r["address"] else f"{r['address']}:{r['port']}"
            weight = f"{r['weight'] if r['weight'] is not None else '-'}/{r['configured_weight']}"
            conns = f"{r['active_connections']}/{r['connections']}"
            lines.append(f"  {host:<28} {r['forward']:<5} {weight:>9} {r['state']:<11} {conns:>11}  "
                         f"{_check_text(r)}")
    if doc.get("cluster_events"):
        lines.append("cluster events (Pacemaker):")
        lines.extend(f"  {e}" for e in doc["cluster_events"])
    if doc.get("events"):
        lines.append("")
        lines.append("recent events:")
        lines.extend(f"  {e}" for e in doc["events"][-10:])
    return "\n".join(lines)
