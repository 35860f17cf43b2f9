"""ably-python 3.x: ``channel.history()`` of its REST client against Continuity.

Publishes ``count`` numbered messages with the realtime client (awaiting each ACK), then pages
through history with the REST client: backwards in pages of ``limit``, and forwards. With ``host``
(a server reachable on port 80 there), the realtime client's own ``channel.history()`` too. Prints
one JSON ``result`` line with the serials and data each way.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from ably import AblyRealtime, AblyRest

config: dict[str, Any] = json.loads(sys.argv[-1])


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}, default=str) + "\n")
    sys.stdout.flush()


async def pages(channel: Any, **params: Any) -> tuple[list[str], list[Any], int]:
    result = await channel.history(**params)
    serials: list[str] = []
    data: list[Any] = []
    count = 1
    while True:
        serials += [m.serial for m in result.items]
        data += [m.data for m in result.items]
        if not result.has_next():
            return serials, data, count
        result = await result.next()
        count += 1


async def main() -> None:
    # A token (JWT): ably-python refuses Basic auth with a key over a non-TLS connection. Its
    # realtime client ignores ``port`` (the endpoint carries it); its REST client takes ``port``.
    common = {"token": config["token"], "tls": False, "use_binary_protocol": config["binary"]}
    if config.get("host"):
        # On port 80 (the test forwards it): the realtime client's own REST requests reach it too.
        realtime = AblyRealtime(endpoint=config["host"], **common)
        rest = AblyRest(endpoint=config["host"], **common)
    else:
        realtime = AblyRealtime(endpoint=f"127.0.0.1:{config['port']}", **common)
        rest = AblyRest(endpoint="127.0.0.1", port=config["port"], **common)
    try:
        await realtime.connection.once_async("connected")
        channel = realtime.channels.get(config["channel"])
        await channel.attach()
        published = []
        for n in range(config["count"]):
            published.append(await channel.publish("n", {"n": n}))
        backwards, data, count = await pages(rest.channels.get(config["channel"]), limit=config["limit"])
        # The realtime client's own channel.history() builds its HTTP URL from the endpoint, which
        # here carries the port, and appends :80: it cannot reach a server on another port.
        forwards, _, _ = await pages(
            rest.channels.get(config["channel"]), limit=config["limit"], direction="forwards"
        )
        result: dict[str, Any] = {"backwards": backwards, "data": data, "pages": count, "forwards": forwards}
        if config.get("host"):
            # The realtime client's channel.history() (RealtimeChannel inherits the REST one).
            rt_backwards, rt_data, rt_pages = await pages(channel, limit=config["limit"])
            rt_forwards, _, _ = await pages(channel, limit=config["limit"], direction="forwards")
            result["realtime"] = {
                "backwards": rt_backwards, "data": rt_data, "pages": rt_pages, "forwards": rt_forwards,
            }
        emit("result", **result)
    finally:
        await realtime.close()
        await rest.close()


asyncio.run(main())
