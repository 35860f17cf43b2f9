"""Hostile input at a running cluster while a healthy client keeps its stream (issue 6).

A two-frontend cluster with a router. A healthy publisher and subscriber, both through the
router, exchange a numbered stream for the whole test. Meanwhile, at the router and at a frontend
directly, we throw:

* garbage ProtocolMessages (invalid JSON, truncated msgpack, wrong shapes, oversized frames);
* a text frame that is not UTF-8, and a frame header announcing a 1 TiB payload;
* slowloris clients that trickle header lines and never finish the request head;
* a flood of connects, half completed and dropped, half abandoned mid-handshake.

Afterwards the subscriber has every ACKed message exactly once and in order on its one
connection, every bad socket was closed by the daemon, the floods' sockets are gone from the
live gauges, and each daemon's RSS grew by a bounded amount.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import trio

import continuity
from continuity import ConnectionEvent, ConnectionState
from kernel.protocol import Action
from tests.integration.test_garbage import GARBAGE
from tests.support.cluster import Node, run_cluster
from tests.support.procs import API_KEY, http_get, parse_metrics
from tests.support.raw import raw_connect
from tests.support.streams import assert_contiguous, wait_until, wait_until_async

pytestmark = pytest.mark.integration

SLOWLORIS = 20  # per target
FLOOD = 150  # per target
FLOOD_CONCURRENCY = 30
# The daemons' header timeout is 10 s by default; a slowloris socket must be gone well after it.
SLOWLORIS_CLOSED_WITHIN = 25.0
RSS_GROWTH_LIMIT = 96 * 1024 * 1024
MAX_FRAME_SIZE = 524_288  # the frontends' default max_frame_size
CHUNK = b"\x00" * 16_384


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


async def metrics(node: Node) -> dict[str, float]:
    status, body = await http_get(node.host, node.port, "/metrics")
    assert status == 200
    return parse_metrics(body.decode())


def gauge(values: dict[str, float], name: str) -> float:
    return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))


def masked_frame(opcode: int, payload: bytes, *, announce: int | None = None) -> bytes:
    """A client frame (FIN set, masked); ``announce`` overrides the length in the header."""
    length = len(payload) if announce is None else announce
    head = bytes([0x80 | opcode])
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 2**16:
        head += bytes([0x80 | 126]) + length.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + length.to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def open_upgraded(host: str, port: int) -> trio.SocketStream:
    """A TCP stream past a real WebSocket handshake (``101``) for a protocol connect."""
    stream = await trio.open_tcp_stream(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    await stream.send_all(
        (
            f"GET /?format=json&v=6&key={API_KEY} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await stream.receive_some(4096)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    return stream


async def read_until_closed(stream: trio.SocketStream) -> None:
    """Read (and discard) until the peer closes; a reset counts as closed."""
    try:
        while await stream.receive_some(65536):
            pass
    except trio.BrokenResourceError:
        pass
    finally:
        await stream.aclose()


async def bad_frames(node: Node, closed: list[str]) -> None:
    for label, fmt, frame in GARBAGE:
        async with raw_connect(node.url, fmt=fmt, key=API_KEY) as raw:  # type: ignore[arg-type]
            await raw.recv_action(Action.CONNECTED)
            await raw.send_frame(frame)
            error = await raw.recv_action(Action.ERROR)
            assert error.error is not None and error.error.code == 40000, (node.name, label)
            await raw.closed()
        closed.append(f"{node.name}:{label}")
    stream = await open_upgraded(node.host, node.port)
    await stream.send_all(masked_frame(0x1, b"\xff\xfe\xfd{"))
    await read_until_closed(stream)
    closed.append(f"{node.name}:invalid-utf8-text")
    # A header announcing 1 TiB, then a stream of payload: cut once past max_frame_size, with
    # nothing buffered beyond it.
    stream = await open_upgraded(node.host, node.port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_until_closed, stream)
        try:
            await stream.send_all(masked_frame(0x2, b"", announce=2**40))
            for _ in range(2 * MAX_FRAME_SIZE // len(CHUNK)):
                await stream.send_all(CHUNK)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    closed.append(f"{node.name}:one-tebibyte-frame")


async def slowloris(node: Node, closed: list[float]) -> None:
    """Trickle header lines (the attacker's own pacing) until the daemon hangs up."""

    async def one() -> None:
        stream = await trio.open_tcp_stream(node.host, node.port)
        start = trio.current_time()
        try:
            await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            while True:
                await stream.send_all(b"X-Slow: 1\r\n")
                with trio.move_on_after(0.5):
                    if not await stream.receive_some(4096):
                        break
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()
        closed.append(trio.current_time() - start)

    async with trio.open_nursery() as nursery:
        for _ in range(SLOWLORIS):
            nursery.start_soon(one)


async def flood(node: Node, done: list[int]) -> None:
    limiter = trio.CapacityLimiter(FLOOD_CONCURRENCY)

    async def one(i: int) -> None:
        async with limiter:
            if i % 2:
                async with raw_connect(node.url, key=API_KEY) as raw:
                    await raw.recv_action(Action.CONNECTED)
            else:
                stream = await trio.open_tcp_stream(node.host, node.port)
                await stream.send_all(b"GET /?format=json&v=6 HTTP/1.1\r\nUpgrade: webs")
                await stream.aclose()
            done.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(FLOOD):
            nursery.start_soon(one, i)


async def test_hostile_input_leaves_a_healthy_stream_whole(tmp_path: Path) -> None:
    with trio.fail_after(150):
        async with run_cluster(
            tmp_path, frontends=[("fe-a1", "a"), ("fe-b1", "b")], routers=[("rt1", "a")]
        ) as cluster:
            router, fe = cluster.nodes["rt1"], cluster.nodes["fe-b1"]
            targets = [router, fe]
            daemons = [n for n in cluster.nodes.values() if n.process is not None]
            rss_before = {n.name: rss_bytes(n.process.pid) for n in daemons}  # type: ignore[union-attr]
            live_before = {n.name: gauge(await metrics(n), "continuity_connections_live")
                           for n in cluster.frontends}

            url = cluster.router_url()
            async with continuity.connect(url, key=API_KEY, format="json") as sub_conn, continuity.connect(
                url, key=API_KEY, format="msgpack"
            ) as pub_conn:
                sub_id = sub_conn.id
                inbox = sub_conn.channel("calm")
                outbox = pub_conn.channel("calm")
                acked: list[str] = []
                received: list[tuple[object, str | None]] = []
                closed_bad: list[str] = []
                slow_closed: list[float] = []
                flooded: list[int] = []
                attack_over = trio.Event()

                async with inbox.subscribe() as sub:

                    async def receive() -> None:
                        async for msg in sub:
                            received.append((msg.data, msg.serial))

                    async def publish() -> None:
                        n = 0
                        while not attack_over.is_set() or n < 20:
                            acked.extend(await outbox.publish("tick", n))
                            n += 1

                    async def attack() -> None:
                        async with trio.open_nursery() as nursery:
                            for node in targets:
                                nursery.start_soon(bad_frames, node, closed_bad)
                                nursery.start_soon(slowloris, node, slow_closed)
                                nursery.start_soon(flood, node, flooded)
                        attack_over.set()

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(receive)
                        nursery.start_soon(attack)
                        await publish()
                        await wait_until(lambda: len(received) >= len(acked))
                        nursery.cancel_scope.cancel()

                # Every ACKed message exactly once, in order, on the one connection.
                assert [d for d, _ in received] == list(range(len(acked)))
                assert [s for _, s in received] == acked
                assert_contiguous(acked)
                assert sub_conn.id == sub_id and sub_conn.transports_opened == 1
                assert not [e for e in sub_conn.event_log
                            if isinstance(e, ConnectionEvent) and e.state is ConnectionState.DISCONNECTED]

            # Every hostile socket was closed by the daemon, the slowloris ones near the header timeout.
            assert len(closed_bad) == len(targets) * (len(GARBAGE) + 2)
            assert len(slow_closed) == len(targets) * SLOWLORIS
            assert max(slow_closed) < SLOWLORIS_CLOSED_WITHIN, max(slow_closed)
            assert len(flooded) == len(targets) * FLOOD

            # The floods are gone from the live gauges (dropped connections may stay detached,
            # bounded by the state TTL), and memory stayed bounded.
            async def settled() -> bool:
                for n in cluster.frontends:
                    if gauge(await metrics(n), "continuity_connections_live") > live_before[n.name]:
                        return False
                return gauge(await metrics(router), "continuity_router_websockets_live") == 0

            with trio.fail_after(20):
                await wait_until_async(settled)
            for n in daemons:
                grew = rss_bytes(n.process.pid) - rss_before[n.name]  # type: ignore[union-attr]
                assert grew < RSS_GROWTH_LIMIT, f"{n.name} RSS grew by {grew} bytes"

            fe_errors = gauge(await metrics(fe), "continuity_protocol_errors_total")
            assert fe_errors >= len(GARBAGE), fe_errors
