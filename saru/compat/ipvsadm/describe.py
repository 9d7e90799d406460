"""ipvsadm's command line for one table operation: ``-A -t VIP:80 -s wlc``, ``-a … -r RIP:80 -g -w 1``.

``describe_op`` names an ``Op`` in ipvsadm's words — what ``saru plan`` prints, what the IPVS data
plane quotes in an error, and (``save_format``) the destination lines of ``ipvsadm -S``. Pure.
"""

from __future__ import annotations

from typing import assert_never

from saru.model import (
    FORWARD_FLAGS,
    AddDest,
    AddService,
    DelDest,
    DelService,
    Dest,
    EditDest,
    EditService,
    Op,
    ServiceSettings,
)


def describe_op(op: Op, save_format: bool = False) -> str:
    """One line per op in ipvsadm's vocabulary, for ``saru plan``; ``save_format`` gives the
    destination lines exactly as ``ipvsadm -S`` prints them."""
    svc = op.service
    flag = {"tcp": "-t", "udp": "-u", "fwm": "-f"}[svc.protocol]
    target = f"{flag} {svc.fwmark if svc.protocol == 'fwm' else svc.hostport}"
    if svc.protocol == "fwm" and svc.family == 6:
        target += " -6"
    match op:
        case AddService(settings=settings):
            return _service_line("-A", target, settings)
        case EditService(settings=settings):
            return _service_line("-E", target, settings)
        case DelService():
            return f"-D {target}"
        case AddDest(dest=dest):
            return _dest_line("-a", target, dest, save_format)
        case EditDest(dest=dest):
            return _dest_line("-e", target, dest, save_format)
        case DelDest(address=address, port=port):
            host = f"[{address}]" if ":" in address else address
            return f"-d {target} -r {host}:{port}"
        case _:
            assert_never(op)


def _service_line(verb: str, target: str, s: ServiceSettings) -> str:
    text = f"{verb} {target} -s {s.scheduler}"
    if s.persistent is not None:
        text += f" -p {s.persistent}"
        if s.netmask:
            text += f" -M {s.netmask}"
    if s.schedflags:
        text += f" -b {s.schedflags}"
    if s.ops:
        text += " -o"
    return text


def _dest_line(verb: str, target: str, d: Dest, save_format: bool) -> str:
    text = f"{verb} {target} -r {d.hostport} {FORWARD_FLAGS[d.forward]} -w {d.weight}"
    if save_format:  # exactly ipvsadm -S: the tunnel type, no thresholds
        return text + (" --tun-type ipip" if d.forward == "ipip" else "")
    if d.upper_threshold:
        text += f" -x {d.upper_threshold}"
    if d.lower_threshold:
        text += f" -y {d.lower_threshold}"
    return text
