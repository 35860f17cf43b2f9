"""ably-python 3.x realtime presence against Continuity, run as its own asyncio process.

alice (clientId ``alice``) enters, updates and leaves; bob (``bob``) enters; a late client attaches
after the enters. Every client subscribes to presence; the result lists what each saw and what
``get()`` returned, for the test (trio) to check.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from ably import AblyRealtime

config: dict[str, Any] = json.loads(sys.argv[-1])


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}, default=str) + "\n")
    sys.stdout.flush()


def client(client_id: str | None) -> AblyRealtime:
    return AblyRealtime(
        key=config["key"],
        client_id=client_id,
        endpoint=f"127.0.0.1:{config['port']}",
        tls=False,
        use_binary_protocol=config["binary"],
    )


ACTIONS = {0: "absent", 1: "present", 2: "enter", 3: "leave", 4: "update"}  # TP2


def describe(p: Any) -> dict[str, Any]:
    action = (
        ACTIONS.get(p.action, p.action) if isinstance(p.action, int) else getattr(p.action, "name", p.action)
    )
    return {
        "action": str(action).lower(),
        "clientId": p.client_id,
        "connectionId": p.connection_id,
        "data": p.data,
    }


async def run() -> None:
    seen: dict[str, list[dict[str, Any]]] = {"alice": [], "bob": [], "late": []}
    changed = asyncio.Event()
    clients = {name: client(None if name == "late" else name) for name in ("alice", "bob")}
    channels = {}
    for name, c in clients.items():
        ch = c.channels.get(config["channel"])
        channels[name] = ch

        def listener(p: Any, name: str = name) -> None:
            seen[name].append(describe(p))
            changed.set()

        await ch.presence.subscribe(listener)

    async def wait(pred: Any, what: str) -> None:
        async with asyncio.timeout(15):
            while not pred():
                changed.clear()
                await changed.wait()

    await channels["alice"].presence.enter({"mood": "ok"})
    await channels["bob"].presence.enter("bob-data")
    await wait(lambda: len(seen["alice"]) >= 2 and len(seen["bob"]) >= 2, "both enters seen")
    late = client(None)
    late_ch = late.channels.get(config["channel"])

    def on_late(p: Any) -> None:
        seen["late"].append(describe(p))
        changed.set()

    await late_ch.presence.subscribe(on_late)
    members = [describe(m) for m in await late_ch.presence.get()]
    await channels["alice"].presence.update("busy")
    await channels["alice"].presence.leave()
    await wait(lambda: len([e for e in seen["late"] if e["action"] == "leave"]) >= 1, "late sees the leave")
    after = [describe(m) for m in await late_ch.presence.get()]
    emit("result", seen=seen, members=members, after=after)
    for c in (*clients.values(), late):
        await c.close()


try:
    asyncio.run(run())
except Exception as exc:  # reported to the test, which fails with it
    emit("fatal", error=repr(exc))
    sys.exit(1)
