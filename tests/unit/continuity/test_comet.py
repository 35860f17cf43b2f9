"""The client's Comet pieces: the body decoder, request targets, error answers, and the keep-alive
HTTP lane against an in-process server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import h11
import pytest
import trio

from continuity.comet import CometDecoder, HttpLane, connect_target, error_info, op_target, send_body
from continuity.transport import CometError
from kernel.errors import RemoteProtocolError
from kernel.protocol import Action, ProtocolMessage, decode_json_array

MAX = 1024 * 1024


def actions(frames: list[ProtocolMessage]) -> list[Action]:
    return [pm.action for pm in frames]


# ------------------------------------------------------------------ CometDecoder


def test_decoder_yields_each_line_once_it_is_complete() -> None:
    d = CometDecoder(MAX)
    assert d.feed(b'[{"action":0},{"act') == []
    assert actions(d.feed(b'ion":9}]\n[{"action":4,"connectionId":"c"}]\n[')) == [
        Action.HEARTBEAT, Action.ERROR, Action.CONNECTED]
    assert actions(d.feed(b'{"action":1}]\n')) == [Action.ACK]
    assert d.end() == []


def test_decoder_treats_empty_arrays_and_blank_lines_as_nothing() -> None:
    d = CometDecoder(MAX)
    assert d.feed(b"[]\n\n  \n[]\n") == []
    assert d.end() == []


def test_decoder_keeps_a_last_line_without_a_newline_until_the_end() -> None:
    d = CometDecoder(MAX)
    assert d.feed(b'[{"action":0}]') == []
    assert actions(d.end()) == [Action.HEARTBEAT]
    assert d.end() == []


@pytest.mark.parametrize("body", [b'{"error":{"code":40000}}\n', b"nonsense\n", b'[{"action":0}\n', b"[1]\n"])
def test_decoder_rejects_a_line_that_is_not_an_array_of_messages(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        CometDecoder(MAX).feed(body)


def test_decoder_bounds_an_unterminated_line() -> None:
    d = CometDecoder(64)
    d.feed(b"[" + b" " * 60)
    with pytest.raises(RemoteProtocolError):
        d.feed(b" " * 10)


# ------------------------------------------------------------ targets and bodies


def test_connect_target_drops_format_and_asks_for_heartbeats() -> None:
    target = connect_target({"key": "app.k:s", "format": "msgpack", "v": "6", "heartbeats": "false",
                             "resume": "abc!def"})
    path, _, query = target.partition("?")
    assert path == "/comet/connect"
    assert dict(p.split("=", 1) for p in query.split("&")) == {
        "key": "app.k%3As", "v": "6", "heartbeats": "true", "resume": "abc%21def"}


def test_op_target_carries_the_raw_key_and_only_the_auth_params() -> None:
    target = op_target("node1-k3y!x", "recv", {"key": "app.k:s", "v": "6", "resume": "old", "format": "json"})
    assert target == "/comet/node1-k3y!x/recv?key=app.k%3As"
    assert op_target("k", "send", {"access_token": "t"}) == "/comet/k/send?access_token=t"


def test_send_body_is_a_newline_terminated_json_array() -> None:
    frames = [ProtocolMessage(action=Action.ATTACH, channel="a"),
              ProtocolMessage(action=Action.MESSAGE, channel="a", msg_serial=3, messages=[{"data": b"\x01"}])]
    body = send_body(frames)
    assert body.endswith(b"\n") and isinstance(json.loads(body), list)
    back = decode_json_array(body, max_size=MAX)
    assert [(pm.action, pm.channel, pm.msg_serial) for pm in back] == [
        (Action.ATTACH, "a", None), (Action.MESSAGE, "a", 3)]
    assert back[1].messages is not None and back[1].messages[0]["encoding"] == "base64"


def test_error_info_prefers_the_servers_error() -> None:
    info = error_info(503, b'{"error":{"code":80003,"statusCode":503,"message":"no frontend"}}')
    assert (info.code, info.status_code, info.message) == (80003, 503, "no frontend")


@pytest.mark.parametrize("body", [b"", b"<html>bad gateway</html>", b"[]", b'{"error":"text"}'])
def test_error_info_falls_back_to_the_status(body: bytes) -> None:
    info = error_info(502, body)
    assert (info.code, info.status_code) == (80003, 502)


# ------------------------------------------------------------------- HttpLane

Handler = Callable[[h11.Connection, trio.SocketStream, h11.Request], Awaitable[bool]]


@asynccontextmanager
async def http_server(handler: Handler) -> AsyncIterator[tuple[int, list[int]]]:
    """An in-process HTTP/1.1 server on 127.0.0.1:0; ``handler`` answers each request and returns
    whether to keep the connection. Yields the port and the number of requests per connection."""
    per_connection: list[int] = []

    async def serve_one(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        index = len(per_connection)
        per_connection.append(0)
        async with stream:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                elif isinstance(event, h11.Request):
                    per_connection[index] += 1
                    while not isinstance(body := conn.next_event(), h11.EndOfMessage):
                        if body is h11.NEED_DATA:
                            conn.receive_data(await stream.receive_some(65536))
                    if not await handler(conn, stream, event):
                        return
                    conn.start_next_cycle()
                else:
                    return

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, serve_one, 0)
        yield listeners[0].socket.getsockname()[1], per_connection
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def lane_to(port: int) -> AsyncIterator[HttpLane]:
    lane = HttpLane("127.0.0.1", port)
    try:
        yield lane
    finally:
        lane.close()


async def respond(conn: h11.Connection, stream: trio.SocketStream, status: int, *chunks: bytes) -> None:
    await stream.send_all(conn.send(h11.Response(status_code=status, headers=[
        ("transfer-encoding", "chunked"), ("content-type", "application/json")])) or b"")
    for chunk in chunks:
        await stream.send_all(conn.send(h11.Data(data=chunk)) or b"")
    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")


async def test_lane_reuses_one_keep_alive_connection() -> None:
    async def handler(conn: h11.Connection, stream: trio.SocketStream, req: h11.Request) -> bool:
        await respond(conn, stream, 200, b"[]\n")
        return True

    with trio.fail_after(10):
        async with http_server(handler) as (port, per_connection):
            async with lane_to(port) as lane:
                got: list[tuple[int, bytes]] = []
                for _ in range(3):
                    assert await lane.request("GET", "/comet/k/recv", lambda s, d: got.append((s, d))) == 200
                assert await lane.request("POST", "/comet/k/send", lambda s, d: None, b"[]\n") == 200
    assert lane.opened == 1 and per_connection == [4]
    assert got == [(200, b"[]\n")] * 3


async def test_lane_delivers_a_streamed_body_as_it_arrives() -> None:
    seen_first = trio.Event()

    async def handler(conn: h11.Connection, stream: trio.SocketStream, req: h11.Request) -> bool:
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=[
            ("transfer-encoding", "chunked")])) or b"")
        await stream.send_all(conn.send(h11.Data(data=b'[{"action":0}]\n')) or b"")
        await seen_first.wait()  # the rest only once the client has handled the first line
        await stream.send_all(conn.send(h11.Data(data=b'[{"action":1}]\n')) or b"")
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        return True

    lines: list[bytes] = []

    def on_data(status: int, data: bytes) -> None:
        assert status == 200
        lines.append(data)
        seen_first.set()

    with trio.fail_after(10):
        async with http_server(handler) as (port, _):
            async with lane_to(port) as lane:
                assert await lane.request("GET", "/comet/k/recv", on_data) == 200
    assert lines == [b'[{"action":0}]\n', b'[{"action":1}]\n']


async def test_lane_reports_the_status_of_an_error_answer_and_reopens_after_a_close() -> None:
    async def handler(conn: h11.Connection, stream: trio.SocketStream, req: h11.Request) -> bool:
        if req.target.startswith(b"/bad"):
            body = b'{"error":{"code":40400,"statusCode":404,"message":"no"}}'
            await stream.send_all(conn.send(h11.Response(status_code=404, headers=[
                ("content-length", str(len(body))), ("connection", "close")])) or b"")
            await stream.send_all(conn.send(h11.Data(data=body)) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
            return False
        await respond(conn, stream, 200, b"[]\n")
        return True

    with trio.fail_after(10):
        async with http_server(handler) as (port, per_connection):
            async with lane_to(port) as lane:
                body = bytearray()
                assert await lane.request("GET", "/bad", lambda s, d: body.extend(d)) == 404
                assert error_info(404, bytes(body)).code == 40400
                assert await lane.request("GET", "/comet/k/recv", lambda s, d: None) == 200
    assert lane.opened == 2 and per_connection == [1, 1]


async def test_lane_raises_when_the_server_closes_mid_answer() -> None:
    async def handler(conn: h11.Connection, stream: trio.SocketStream, req: h11.Request) -> bool:
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=[
            ("content-length", "100")])) or b"")
        await stream.send_all(conn.send(h11.Data(data=b"[]\n")) or b"")
        return False  # close with 97 bytes missing

    with trio.fail_after(10):
        async with http_server(handler) as (port, _):
            async with lane_to(port) as lane:
                with pytest.raises((trio.BrokenResourceError, CometError)):
                    await lane.request("GET", "/comet/k/recv", lambda s, d: None)


async def test_lane_connect_fails_with_oserror_when_nothing_listens() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    with trio.fail_after(10), pytest.raises(OSError):
        await HttpLane("127.0.0.1", port).connect()
