"""Raw Ably REST requests for tests: one HTTP/1.1 exchange per call, Basic auth with the test key."""

from __future__ import annotations

import base64
import json
from typing import Any

import trio

from tests.support.procs import API_KEY, _dechunk, http_get


async def rest_call(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    read: bool = True,
    key: str = API_KEY,
) -> tuple[int, Any]:
    """``(status, decoded JSON body)``; with ``read=False`` the socket is closed unread (a lost answer)."""
    hdrs = {
        "host": "127.0.0.1",
        "content-type": "application/json",
        "content-length": str(len(body)),
        "authorization": "Basic " + base64.b64encode(key.encode()).decode(),
        "connection": "close",
        **(headers or {}),
    }
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(head.encode() + body)
        if not read:
            return 0, None
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    head, _, payload = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        payload = _dechunk(payload)
    return status, json.loads(payload) if payload else None


async def metric(port: int, name: str, labels: str) -> float:
    """The value of the first sample of ``name`` whose labels contain ``labels`` (0 if none)."""
    _, body = await http_get("127.0.0.1", port, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name) and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0
