"""kernel.http.serve_http: the one h11 loop of both front doors."""

from __future__ import annotations

import h11
import trio
import trio.testing

from kernel.http import read_body, reason, respond, serve_http


async def _exchange(raw: bytes, *, timeout_s: float = 5.0) -> tuple[bytes, list[bytes]]:
    """Run serve_http on one end of a memory pair, send ``raw`` and read until it closes."""
    client, server = trio.testing.memory_stream_pair()
    seen: list[bytes] = []
    errors: list[str] = []

    async def dispatch(conn: h11.Connection, stream: trio.abc.Stream, req: h11.Request) -> bool:
        body = await read_body(conn, stream)
        seen.append(req.target + b" " + body)
        if req.target == b"/missing":
            await respond(conn, stream, 404, b"text/plain", b"no\n")
        else:
            await respond(conn, stream, 200, b"text/plain", b"hello " + body)
        return req.target != b"/last"

    out = bytearray()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: serve_http(server, dispatch, header_timeout_s=timeout_s,
                                                  on_protocol_error=lambda exc: errors.append(str(exc))))
            await client.send_all(raw)
            while data := await client.receive_some(65536):
                out += data
    return bytes(out), seen + [e.encode() for e in errors]


async def test_keep_alive_and_reason_phrases() -> None:
    out, seen = await _exchange(
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /last HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert seen == [b"/a abc", b"/missing ", b"/last "]
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert b"HTTP/1.1 404 Not Found\r\n" in out and out.endswith(b"hello ")


async def test_malformed_request_gets_400_with_its_reason() -> None:
    out, seen = await _exchange(b"GARBAGE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert len(seen) == 1  # the protocol error was reported, nothing dispatched


async def test_slow_headers_are_cut() -> None:
    out, seen = await _exchange(b"GET / HTTP/1.1\r\nHost:", timeout_s=0.05)
    assert out == b"" and seen == []


def test_reason() -> None:
    assert reason(503) == b"Service Unavailable" and reason(599) == b""


async def test_a_handover_runs_after_the_http_state_is_dropped_and_its_stream_errors_stay_quiet() -> None:
    import gc
    import weakref

    client, server = trio.testing.memory_stream_pair()
    conns: list[weakref.ref[h11.Connection]] = []
    ran: list[str] = []

    async def dispatch(conn: h11.Connection, stream: trio.abc.Stream, req: h11.Request):
        conns.append(weakref.ref(conn))
        await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")

        async def handover() -> None:
            gc.collect()
            ran.append("h11 gone" if conns[0]() is None else "h11 alive")
            await stream.send_all(b"upgraded")
            raise trio.BrokenResourceError  # the client vanished mid-stream: no crash

        return handover

    out = bytearray()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: serve_http(server, dispatch, header_timeout_s=5))
            await client.send_all(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
            )
            while data := await client.receive_some(65536):
                out += data
    assert ran == ["h11 gone"]
    assert out.endswith(b"upgraded")  # and the stream was closed after it (the read loop ended)
