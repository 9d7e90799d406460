"""Drives an ``NftDataplane`` inside a network namespace for the kernel tests (JSON lines on stdio).

Requests: ``{"op": "apply", "table": [...]}`` (diff from the live table, apply; answers the ops),
``{"op": "read"}``, ``{"op": "stats"}``, ``{"op": "zero"}``, ``{"op": "connections"}``,
``{"op": "restart"}`` (a fresh NftDataplane instance, as
after a daemon restart), ``{"op": "expire", "on": true}`` (sets ``expire_nodest_conn``),
``{"op": "nft", "script": "...", "json": false}`` (raw libnftables).
Each answer is one JSON line ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
``--closing-timeout N`` shortens the life of closed direct-routed flows (for drain tests);
``--nat stateless`` forwards NAT virtuals without conntrack (``[nft] nat``); ``--flowtable eth0,eth1``
offloads established NAT flows to a flowtable on those devices (``[nft] flowtable``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from saru.compat.ipvsadm import describe_op
from saru.control.codec import table_from_list, table_to_list
from saru.dataplane.nft import Nft, NftDataplane
from saru.diff import diff

CLOSING = int(sys.argv[sys.argv.index("--closing-timeout") + 1]) if "--closing-timeout" in sys.argv else None
NAT = sys.argv[sys.argv.index("--nat") + 1] if "--nat" in sys.argv else "stateful"
FLOWTABLE = tuple(sys.argv[sys.argv.index("--flowtable") + 1].split(",")) if "--flowtable" in sys.argv else ()


async def handle(state: dict[str, NftDataplane], request: dict[str, Any]) -> dict[str, Any]:
    dp = state["dp"]
    op = request["op"]
    if op == "apply":
        ops = diff(await dp.read(), table_from_list(request["table"]))
        await dp.apply(ops)
        return {"ops": [describe_op(o) for o in ops], "how": dp.last_apply}
    if op == "read":
        return {"table": table_to_list(await dp.read())}
    if op == "stats":
        stats = await dp.stats()
        return {"stats": {str(k): {"connections": s.connections, "bytes_in": s.bytes_in,
                                   "dests": {f"{a}:{p}": d.connections for (a, p), d in s.dests.items()},
                                   "dest_bytes": sum(d.bytes_in for d in s.dests.values())}
                          for k, s in stats.items()}}
    if op == "zero":
        await dp.zero()
        return {}
    if op == "connections":
        return {"connections": [{"protocol": c.protocol, "client": list(c.client), "virtual": list(c.virtual),
                                 "dest": list(c.dest), "state": c.state, "expires": c.expires}
                                for c in await dp.connections()]}
    if op == "expire":
        dp.expire_nodest_conn = bool(request["on"])
        return {}
    if op == "restart":
        await dp.close()
        state["dp"] = NftDataplane(closing_timeout=CLOSING, nat=NAT, flowtable=FLOWTABLE)
        await state["dp"].start()
        return {}
    if op == "nft":
        with Nft() as nft:
            return {"output": nft.run(request["script"], json_out=bool(request.get("json")))}
    raise ValueError(f"unknown op {op}")


async def main() -> None:
    state = {"dp": NftDataplane(closing_timeout=CLOSING, nat=NAT, flowtable=FLOWTABLE)}
    await state["dp"].start()
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    for line in sys.stdin:
        try:
            answer = {"ok": True, **await handle(state, json.loads(line))}
        except Exception as exc:
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    await state["dp"].close()


if __name__ == "__main__":
    asyncio.run(main())
