"""ably-python 3.x ``AblyRest`` against Continuity, run as its own asyncio process.

The test (trio) passes the config as JSON in argv[-1] and reads JSON events from stdout.
Through the router: publishes numbered messages (msgpack, then JSON: singles, arrays, one with
a client-supplied id published twice), pages history, gets a token from ``auth_callback``
returning ``create_token_request()`` and publishes with it, and is refused outside the token's
capability. Emits ``done`` with what it saw.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from ably import AblyRest
from ably.types.message import Message
from ably.util.exceptions import AblyException

config: dict[str, Any] = json.loads(sys.argv[-1])


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}, default=str) + "\n")
    sys.stdout.flush()


def rest(**auth: Any) -> AblyRest:
    return AblyRest(endpoint="127.0.0.1", port=config["port"], tls=False, **auth)


async def main() -> None:
    channel = config["channel"]
    # ably-python refuses Basic auth without TLS (40103): with the key it signs TokenRequests
    # itself and posts them to /keys/{keyName}/requestToken, then publishes with the token.
    binary = rest(key=config["key"], use_token_auth=True)
    text = rest(key=config["key"], use_token_auth=True, use_binary_protocol=False)
    results = []
    n = 0
    for client in (binary, text):
        ch = client.channels.get(channel)
        for _ in range(3):
            results.append((await ch.publish(f"n{n}", f"data-{n}")).serials)
            n += 1
        batch = [Message(f"n{n + i}", f"data-{n + i}") for i in range(3)]
        results.append((await ch.publish(batch)).serials)
        n += 3
    ch = binary.channels.get(channel)
    first = await ch.publish(Message(f"n{n}", "first", id="py-fixed-id"))
    again = await text.channels.get(channel).publish(Message(f"n{n}-again", "second", id="py-fixed-id"))
    n += 1

    pages = []
    page = await ch.history(limit=4)
    while True:
        pages.append([m.name for m in page.items])
        if not page.has_next():
            break
        page = await page.next()

    async def callback(params: Any) -> Any:
        return await binary.auth.create_token_request(
            {"client_id": "py-user", "capability": {channel: ["publish", "history"]}}
        )

    tokened = rest(auth_callback=callback)
    token_pub = await tokened.channels.get(channel).publish("as-py-user", "x")
    refused: dict[str, Any] = {}
    try:
        await tokened.channels.get("elsewhere").publish("no", "no")
    except AblyException as exc:
        refused = {"code": exc.code, "status": exc.status_code}
    details = await binary.auth.request_token({"client_id": "py-direct", "ttl": 60000})
    emit(
        "done",
        n=n,
        results=results,
        dup=[first.serials, again.serials],
        pages=pages,
        token_serials=token_pub.serials,
        token_client=tokened.auth.client_id,
        refused=refused,
        direct={"client_id": details.client_id, "has_token": bool(details.token)},
    )
    for client in (binary, text, tokened):
        await client.close()


asyncio.run(main())
