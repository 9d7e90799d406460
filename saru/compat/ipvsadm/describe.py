"""ipvsadm's command line for one table operation: ``-A -t VIP:80 -s wlc``, ``-a … -r RIP:80 -g -w 1``.

``describe_op`` names an ``Op`` in ipvsadm's words — what ``saru plan`` prints, what the IPVS data
plane quotes in an error, and (``save_format``) the destination lines of ``ipvsadm -S``. Pure.
"""

from __future__ import annotations

from saru.diff import OpError
from saru.model import FORWARD_FLAGS, AddDest, AddService, DelDest, DelService, EditDest, EditService, Op


def describe_op(op: Op, save_format: bool = False) -> str:
    """One line per op in ipvsadm's vocabulary, for ``saru plan``; ``save_format`` gives the
    destination lines exactly as ``ipvsadm -S`` prints them."""
    svc = op.service
    flag = {"tcp": "-t", "udp": "-u", "fwm": "-f"}[svc.protocol]
    target = f"{flag} {svc.fwmark if svc.protocol == 'fwm' else svc.hostport}"
    if svc.protocol == "fwm" and svc.family == 6:
        target += " -6"
    if isinstance(op, AddService | EditService):
        s = op.settings
        text = f"{'-A' if isinstance(op, AddService) else '-E'} {target} -s {s.scheduler}"
        if s.persistent is not None:
            text += f" -p {s.persistent}"
            if s.netmask:
                text += f" -M {s.netmask}"
        if s.schedflags:
            text += f" -b {s.schedflags}"
        if s.ops:
            text += " -o"
        return text
    if isinstance(op, DelService):
        return f"-D {target}"
    if isinstance(op, AddDest | EditDest):
        d = op.dest
        verb = "-a" if isinstance(op, AddDest) else "-e"
        fwd = FORWARD_FLAGS[d.forward]
        text = f"{verb} {target} -r {d.hostport} {fwd} -w {d.weight}"
        if save_format:  # exactly ipvsadm -S: the tunnel type, no thresholds
            return text + (" --tun-type ipip" if d.forward == "ipip" else "")
        if d.upper_threshold:
            text += f" -x {d.upper_threshold}"
        if d.lower_threshold:
            text += f" -y {d.lower_threshold}"
        return text
    if isinstance(op, DelDest):
        host = f"[{op.address}]" if ":" in op.address else op.address
        return f"-d {target} -r {host}:{op.port}"
    raise OpError(f"unknown op {op!r}")  # pragma: no cover
