"""A raw Comet client speaking ProtocolMessages over HTTP by hand (PROTOCOL.md 6.2), for tests.

Like ably-js's Node transport it keeps one keep-alive HTTP connection per lane:
``recv`` (connect and long-polls) and ``send`` (sends, close, disconnect), so a
long-poll in flight never blocks a send.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import h11
import trio


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def messages(self) -> list[dict[str, Any]]:
        """The body as a Comet array (every array must end with a newline)."""
        assert self.body.endswith(b"\n"), f"comet body without a trailing newline: {self.body!r}"
        out: list[dict[str, Any]] = []
        for line in self.body.splitlines():
            if line.strip():
                items = json.loads(line)
                assert isinstance(items, list), f"comet body is not an array: {line!r}"
                out.extend(items)
        return out


class HttpLane:
    """One keep-alive HTTP/1.1 connection, opened on first use and reopened after a close."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.stream: trio.SocketStream | None = None
        self.conn: h11.Connection | None = None
        self.opened = 0

    async def request(
        self, method: str, target: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> Response:
        if self.stream is None or self.conn is None or self.conn.our_state is not h11.IDLE:
            await self.aclose()
            self.stream = await trio.open_tcp_stream(self.host, self.port)
            self.conn = h11.Connection(h11.CLIENT)
            self.opened += 1
        conn, stream = self.conn, self.stream
        hdrs = [("host", f"{self.host}:{self.port}"), ("accept", "application/json"), *(headers or [])]
        if method == "POST":
            hdrs += [("content-type", "application/json"), ("content-length", str(len(body)))]
        data = conn.send(h11.Request(method=method, target=target, headers=hdrs)) or b""
        if body:
            data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)
        status, rheaders, chunks = 0, {}, bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status, rheaders = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                chunks += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise trio.BrokenResourceError("connection closed before the response ended")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        return Response(status, rheaders, bytes(chunks))

    async def aclose(self) -> None:
        if self.stream is not None:
            await trio.aclose_forcefully(self.stream)
        self.stream = self.conn = None


@dataclass
class CometClient:
    """One Comet connection: ``connect`` then ``recv``/``send``/``close``/``disconnect`` by key."""

    host: str
    port: int
    auth: dict[str, str]
    key: str | None = None
    connection_id: str | None = None
    received: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.recv_lane = HttpLane(self.host, self.port)
        self.send_lane = HttpLane(self.host, self.port)

    async def connect(self, **params: str) -> list[dict[str, Any]]:
        """``GET /comet/connect``; remembers the key and id from CONNECTED."""
        query = urlencode({**self.auth, "heartbeats": "true", "v": "6", **params})
        res = await self.recv_lane.request("GET", f"/comet/connect?{query}")
        assert res.status == 200, res
        msgs = res.messages()
        for m in msgs:
            if m["action"] == 4:
                self.key = m["connectionDetails"]["connectionKey"]
                self.connection_id = m["connectionId"]
        self.received += msgs
        return msgs

    def _target(self, op: str, key: str | None = None) -> str:
        return f"/comet/{key or self.key}/{op}?{urlencode(self.auth)}"

    async def recv(self, key: str | None = None) -> list[dict[str, Any]]:
        res = await self.recv_lane.request("GET", self._target("recv", key))
        assert res.status == 200, res
        msgs = res.messages()
        self.received += msgs
        return msgs

    async def send(self, *msgs: dict[str, Any], raw: bytes | None = None) -> list[dict[str, Any]]:
        body = raw if raw is not None else json.dumps(list(msgs)).encode()
        res = await self.send_lane.request("POST", self._target("send"), body)
        assert res.status == 200, res
        return res.messages()

    async def get(self, op: str, key: str | None = None) -> list[dict[str, Any]]:
        res = await self.send_lane.request("GET", self._target(op, key))
        assert res.status == 200, res
        return res.messages()

    async def recv_until(self, predicate: Any) -> dict[str, Any]:
        """Poll until a received message satisfies ``predicate``; return it."""
        while True:
            for m in await self.recv():
                if predicate(m):
                    return m

    async def aclose(self) -> None:
        await self.recv_lane.aclose()
        await self.send_lane.aclose()
