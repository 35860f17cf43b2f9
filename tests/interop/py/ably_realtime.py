"""ably-python 3.x realtime against Continuity, run as its own asyncio process.

The test (trio) passes the config as JSON in argv[-1] and reads JSON events
from stdout. The subscriber goes through the test's tunnel; ably-python's
realtime ignores ``port``, so the endpoint carries it (PROTOCOL 8).

1. connect both clients, subscribe, publish 5 and await their serials;
2. stream numbered messages; emit ``ready``; the test cuts the tunnel;
3. after the re-attach, publish a tail, then report what arrived.
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


def client(port: int) -> AblyRealtime:
    return AblyRealtime(
        key=config["key"],
        endpoint=f"127.0.0.1:{port}",
        tls=False,
        use_binary_protocol=config["binary"],
        disconnected_retry_timeout=300,
        # A connection reset during the WebSocket handshake (the tunnel refusing
        # during a cut) is not surfaced by ably-python 3.1.4: the attempt only
        # ends when this timer fires (default 10 s), so keep it short.
        realtime_request_timeout=2000,
    )


def error(reason: Any) -> dict[str, Any] | None:
    if reason is None:
        return None
    return {"code": getattr(reason, "code", None), "message": str(reason)}


class Changes:
    """Set on every event the callbacks see; ``wait`` re-checks a predicate on each."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def poke(self) -> None:
        self._event.set()

    async def wait(self, predicate: Any, what: str, within: float = 15) -> None:
        try:
            async with asyncio.timeout(within):
                while not predicate():
                    self._event.clear()
                    await self._event.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None


async def run() -> None:
    changes = Changes()
    log: list[dict[str, Any]] = []

    sub = client(config["tunnelPort"])
    pub = client(config["port"])
    channel = sub.channels.get(config["channel"])
    state = {"sent": 0, "acked": 0}

    def on_connection(change: Any) -> None:
        log.append(
            {
                "kind": "connection",
                "current": change.current.value,
                "reason": error(change.reason),
                "id": sub.connection.connection_manager.connection_id,
                "sent": state["sent"],
                "t": round(asyncio.get_running_loop().time(), 2),
            }
        )
        changes.poke()

    def on_channel(change: Any) -> None:
        log.append(
            {
                "kind": "channel",
                "current": change.current.value,
                "resumed": bool(change.resumed),
                "t": round(asyncio.get_running_loop().time(), 2),
                "reason": error(change.reason),
            }
        )
        changes.poke()

    sub.connection.on(on_connection)
    channel.on(on_channel)
    await asyncio.gather(sub.connection.once_async("connected"), pub.connection.once_async("connected"))
    sub_id = sub.connection.connection_manager.connection_id
    pub_id = pub.connection.connection_manager.connection_id

    received: list[dict[str, Any]] = []

    def on_message(msg: Any) -> None:
        received.append(
            {
                "id": msg.id,
                "serial": msg.serial,
                "connectionId": msg.connection_id,
                "name": msg.name,
                "data": msg.data,
            }
        )
        changes.poke()

    await channel.subscribe(on_message)
    pch = pub.channels.get(config["channel"])

    # 1. Basic pub/sub with ACK serials.
    results = []
    for i in range(5):
        res = await pch.publish("basic", {"i": i})
        results.append(list(res.serials))
    await changes.wait(lambda: len(received) >= 5, "the basic messages")
    basic = received[:5]

    # 2. A numbered stream across a cut.
    stop = asyncio.Event()

    async def publishing() -> None:
        while not stop.is_set():
            n = state["sent"]
            state["sent"] += 1
            await pch.publish("n", {"n": n})
            state["acked"] += 1
            changes.poke()
            await asyncio.sleep(config["intervalMs"] / 1000)

    def nums() -> list[int]:
        return [m["data"]["n"] for m in received[5:]]

    task = asyncio.ensure_future(publishing())
    await changes.wait(lambda: len(nums()) >= 10, "the stream to flow")
    emit("ready", connectionId=sub_id, t=round(asyncio.get_running_loop().time(), 2))

    def up() -> bool:
        return channel.state.value == "attached" and sub.connection.state.value == "connected"

    await changes.wait(lambda: not up(), "the cut")
    await changes.wait(up, "the re-attach", within=20)
    resumed_at = state["acked"]
    await changes.wait(lambda: state["acked"] >= resumed_at + config["tail"], "the tail")
    stop.set()
    await task
    await changes.wait(
        lambda: len(nums()) >= state["sent"] and nums()[-1] >= state["sent"] - 1, "the last message"
    )

    emit(
        "result",
        subIdBefore=sub_id,
        subIdAfter=sub.connection.connection_manager.connection_id,
        pubConnectionId=pub_id,
        results=results,
        basic=basic,
        sent=state["sent"],
        acked=state["acked"],
        nums=nums(),
        log=log,
    )
    await asyncio.gather(sub.close(), pub.close())


async def main() -> int:
    try:
        async with asyncio.timeout(config.get("timeoutS", 40)):
            await run()
    except BaseException as exc:  # report anything, then fail
        emit("fatal", error=repr(exc))
        return 1
    emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
