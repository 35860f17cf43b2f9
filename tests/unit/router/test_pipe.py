"""The router's WebSocket byte pipe (``router/proxy.py``): between two plain sockets it copies with
non-blocking reads and writes of its own; bytes arrive whole and in order both ways, through a
reader slower than the writer (the kernel refusing bytes), and a half-close is passed on."""

from __future__ import annotations

import os

import trio

from router import proxy


def _pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


async def _read_to_eof(stream: trio.SocketStream, *, slowly: bool = False) -> bytes:
    got = bytearray()
    while chunk := await stream.receive_some(4096 if slowly else 65536):
        got += chunk
        if slowly:
            await trio.lowlevel.checkpoint()  # a pass per small read: the writer meets a full socket
    return bytes(got)


async def test_the_pipe_copies_both_ways_in_order_and_passes_the_half_close_on() -> None:
    client_far, client_near = _pair()  # the client, and the router's end of its connection
    up_near, up_far = _pair()  # the router's end of the upstream, and the frontend
    down_payload = os.urandom(3_000_000)  # several times a socket buffer: writes block and resume
    up_payload = os.urandom(200_000)
    preamble = b"GET /ws HTTP/1.1\r\n\r\n"
    results: dict[str, bytes] = {}

    async def frontend() -> None:
        results["upstream got"] = await _read_to_eof(up_far)
        await up_far.send_all(down_payload)
        await up_far.send_eof()

    async def client() -> None:
        await client_far.send_all(up_payload)
        await client_far.send_eof()
        results["client got"] = await _read_to_eof(client_far, slowly=True)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(frontend)
            nursery.start_soon(client)
            await proxy.pipe(client_near, up_near, preamble)
    assert results["upstream got"] == preamble + up_payload
    assert results["client got"] == down_payload
    for s in (client_far, client_near, up_near, up_far):
        await s.aclose()

