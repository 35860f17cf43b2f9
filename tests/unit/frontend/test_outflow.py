"""The WebSocket write path: direct non-blocking writes through the Outflow, exact order when the
socket blocks and the writer task takes over, the fallback for streams that are not sockets, and
flow control on publishers with the stall rule for slow consumers."""

from __future__ import annotations

import trio
import trio.testing
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import Pong
from wsproto.frame_protocol import FrameProtocol, Opcode

from frontend.outflow import Outflow
from frontend.websocket import MAX_PROBES, WebSocketTransport
from kernel.protocol import Encoded
from tests.support.streams import wait_until

BIG = 1 << 62


def _messages(n: int, size: int = 200) -> list[Encoded]:
    return [
        Encoded({"action": 15, "channel": "c", "id": f"m{i}", "messages": [{"data": "x" * size}]})
        for i in range(n)
    ]


def _socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


def _open_ws() -> Connection:
    """A server-side wsproto connection in the OPEN state (the handshake is h11's job upstream)."""
    ws = Connection(ConnectionType.SERVER)
    assert ws.state is ConnectionState.OPEN
    return ws


async def _read_pongs(server: trio.SocketStream, transport: WebSocketTransport) -> None:
    """The reader's part: feed Pongs to the transport, as ``_read_loop`` does."""
    ws = transport.ws
    while data := await server.receive_some(65536):
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, Pong):
                transport.on_pong(bytes(event.payload))


async def _read_all(stream: trio.abc.ReceiveStream, count: int) -> list[str]:
    """Read ``count`` frames off ``stream`` and return their ids, in order."""
    parser = FrameProtocol(client=True, extensions=[])
    ids: list[str] = []
    part = ""
    while len(ids) < count:
        parser.receive_bytes(await stream.receive_some(65536))
        for f in parser.received_frames():  # a frame may come in pieces
            if f.opcode is Opcode.PING:
                continue  # a read-receipt probe
            part += str(f.payload)
            if f.frame_finished:
                ids.append(part.split('"id":"', 1)[1].split('"', 1)[0])
                part = ""
    return ids


async def test_direct_writes_keep_order_when_the_socket_blocks() -> None:
    outflow = Outflow(high=BIG, low=0, stall_s=2.0)
    server, client = _socket_pair()
    transport = WebSocketTransport(server, Connection(ConnectionType.SERVER), "json", 1_000_000, outflow)
    msgs = _messages(20_000)  # ~4.6 MB: far more than the socket buffers take
    async with trio.open_nursery() as nursery:
        await nursery.start(outflow.run)
        nursery.start_soon(transport.write_loop, 60.0, 1.0)
        for i, m in enumerate(msgs):
            assert transport.send(m)
            if i % 500 == 0:
                await trio.lowlevel.checkpoint()  # let the Outflow flush in between, as fan-out bursts do
        ids = await _read_all(client, len(msgs))
        assert ids == [f"m{i}" for i in range(len(msgs))]
        assert transport.unsent == 0 and outflow.backlog == 0
        nursery.cancel_scope.cancel()
    await server.aclose()
    await client.aclose()


async def test_direct_write_needs_no_writer_task() -> None:
    outflow = Outflow(high=BIG, low=0, stall_s=2.0)
    server, client = _socket_pair()
    transport = WebSocketTransport(server, Connection(ConnectionType.SERVER), "json", 100, outflow)
    async with trio.open_nursery() as nursery:
        await nursery.start(outflow.run)
        for m in _messages(3):
            transport.send(m)
        assert await _read_all(client, 3) == ["m0", "m1", "m2"]  # no write_loop running
        nursery.cancel_scope.cancel()
    await server.aclose()
    await client.aclose()


async def test_a_stream_that_is_not_a_socket_goes_through_the_writer_task() -> None:
    outflow = Outflow(high=BIG, low=0, stall_s=2.0)
    server, client = trio.testing.memory_stream_pair()
    transport = WebSocketTransport(server, Connection(ConnectionType.SERVER), "json", 100, outflow)
    async with trio.open_nursery() as nursery:
        await nursery.start(outflow.run)
        for m in _messages(3):
            transport.send(m)
        await trio.testing.wait_all_tasks_blocked()
        assert transport.unsent > 0  # the Outflow never wrote it
        nursery.start_soon(transport.write_loop, 60.0, 1.0)
        assert await _read_all(client, 3) == ["m0", "m1", "m2"]
        nursery.cancel_scope.cancel()
    await server.aclose()
    await client.aclose()


async def test_heartbeat_counts_direct_writes_as_traffic() -> None:
    outflow = Outflow(high=BIG, low=0, stall_s=2.0)
    server, client = _socket_pair()
    transport = WebSocketTransport(server, Connection(ConnectionType.SERVER), "json", 100, outflow)
    async with trio.open_nursery() as nursery:
        await nursery.start(outflow.run)
        nursery.start_soon(transport.write_loop, 0.2, 1.0)
        for m in _messages(6):
            transport.send(m)
            await trio.sleep(0.1)  # more often than the idle interval: no heartbeat between
        assert await _read_all(client, 6) == [f"m{i}" for i in range(6)]
        with trio.fail_after(2):
            parser = FrameProtocol(client=True, extensions=[])
            parser.receive_bytes(await client.receive_some(65536))
            (hb,) = list(parser.received_frames())
        assert str(hb.payload) == '{"action":0}'  # and one once idle
        nursery.cancel_scope.cancel()
    await server.aclose()
    await client.aclose()


async def _answer_first_ping(client: trio.SocketStream) -> None:
    """Read until the first Ping and answer it (a client that then stops reading)."""
    parser = FrameProtocol(client=True, extensions=[])
    while True:
        parser.receive_bytes(await client.receive_some(65536))
        for f in parser.received_frames():
            if f.opcode is Opcode.PING:
                await client.send_all(parser.pong(bytes(f.payload)))
                return


async def test_a_client_that_answers_pings_gets_at_most_the_window_unread() -> None:
    outflow = Outflow(high=BIG, low=0, stall_s=2.0)
    server, client = _socket_pair()
    transport = WebSocketTransport(server, _open_ws(), "json", 1_000_000, outflow, window=8192)
    async with trio.open_nursery() as nursery:
        await nursery.start(outflow.run)
        nursery.start_soon(_read_pongs, server, transport)
        for m in _messages(12):  # ~2.8 KB: passes a quarter window, so a probe goes out
            transport.send(m)
        await _answer_first_ping(client)
        with trio.fail_after(2):
            await wait_until(lambda: transport.ponging)
        for m in _messages(200):  # ~46 KB more in bursts, never read by the client
            transport.send(m)
            await trio.lowlevel.checkpoint()
        with trio.fail_after(2):
            await wait_until(lambda: transport.held)
        assert transport.unsent > 30_000  # kept in the queue (and the backlog), not in the kernel
        assert outflow.backlog == transport.unsent
        nursery.cancel_scope.cancel()
    await server.aclose()
    await client.aclose()


async def test_a_client_that_never_answers_pings_is_written_as_before() -> None:
    outflow = Outflow(high=BIG, low=0, stall_s=2.0)
    server, client = _socket_pair()
    transport = WebSocketTransport(server, _open_ws(), "json", 1_000_000, outflow, window=8192)
    async with trio.open_nursery() as nursery:
        await nursery.start(outflow.run)
        nursery.start_soon(transport.write_loop, 60.0, 1.0)
        msgs = _messages(5_000)  # ~1.2 MB, read as it comes: hundreds of probes, none answered
        got: list[str] = []

        async def read() -> None:
            got.extend(await _read_all(client, len(msgs)))

        async with trio.open_nursery() as reading:
            reading.start_soon(read)
            for m in msgs:
                transport.send(m)
                await trio.lowlevel.checkpoint()
            assert not transport.held
        assert got == [f"m{i}" for i in range(len(msgs))]
        assert transport.unsent == 0
        assert len(transport._probes) == MAX_PROBES  # bounded although never answered
        nursery.cancel_scope.cancel()
    await server.aclose()
    await client.aclose()


async def test_stalled_publishers_cut_the_transport_holding_the_backlog() -> None:
    outflow = Outflow(high=16 * 1024, low=4 * 1024, stall_s=0.2)
    server, client = _socket_pair()
    ws = Connection(ConnectionType.SERVER)
    transport = WebSocketTransport(server, ws, "json", 1_000_000, outflow)
    cut = trio.Event()
    transport.on_slow = cut.set
    async with trio.open_nursery() as nursery:
        await nursery.start(outflow.run)
        nursery.start_soon(transport.write_loop, 60.0, 1.0)
        for m in _messages(20_000):  # the client never reads: the socket blocks, the backlog grows
            transport.send(m)
        assert outflow.paused
        with trio.fail_after(2):
            await cut.wait()
        nursery.cancel_scope.cancel()
    await server.aclose()
    await client.aclose()


class _Holder:
    """A transport as the stall rule sees it: unsent bytes, whether they wait on the client."""

    def __init__(self, unsent: int, *, stuck: bool, last_write: float = 0.0) -> None:
        self.unsent, self.waits_on_client, self.last_write = unsent, stuck, last_write
        self.cut = False

    def stuck(self, since: float) -> bool:
        return self.waits_on_client

    def flush(self, now: float) -> None:
        pass

    def cut_slow(self) -> None:
        self.cut = True


async def test_a_process_that_is_behind_cuts_no_one_whose_bytes_merely_wait_for_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """bench/many_channels.py: with the process CPU-bound, every transport held a few frames queued
    for a pass that had not run, none written during the pause, and the rule cut 2,413 healthy
    clients at once. Only transports whose bytes wait on the client are cut now."""
    outflow = Outflow(high=1_000, low=100, stall_s=2.0)
    waiting = [_Holder(300, stuck=False) for _ in range(5)]
    stuck = _Holder(200, stuck=True)
    outflow.transports.update([*waiting, stuck])
    async with trio.open_nursery() as nursery:
        await nursery.start(outflow.run)
        outflow.queued(1_500)
        assert outflow.paused
        with trio.fail_after(10):
            await wait_until(lambda: stuck.cut)
        assert not any(t.cut for t in waiting)  # the largest holders, but not stuck
        outflow.transports.discard(stuck)
        with trio.fail_after(10):
            await wait_until(lambda: outflow.stalls_without_stuck > 0)
        assert not any(t.cut for t in waiting)
        nursery.cancel_scope.cancel()


async def test_a_late_stall_check_cuts_only_the_largest_stuck_transport() -> None:
    """The check ran a whole period late: the loop itself was behind, so "wrote nothing during the
    pause" says nothing about a client; on time, every stuck one that did not write is cut."""
    for late_s, expected in ((3.0, [True, False, False]), (0.0, [True, True, False])):
        outflow = Outflow(high=1_000, low=100, stall_s=2.0)
        holders = [
            _Holder(900, stuck=True),
            _Holder(100, stuck=True, last_write=-1.0),  # wrote nothing since the pause
            _Holder(100, stuck=True, last_write=trio.current_time() + 1.0),  # wrote meanwhile
        ]
        outflow.transports.update(holders)
        outflow.queued(1_500)
        outflow._stall_at = trio.current_time() - late_s
        outflow._cut_stalled()
        assert [t.cut for t in holders] == expected, late_s


def test_the_window_is_a_share_of_the_process_budget() -> None:
    outflow = Outflow(high=BIG, low=0, stall_s=2.0, budget=64 * 1024)
    assert outflow.window(128 * 1024) == 64 * 1024  # no transport yet: the whole budget, capped
    outflow.transports.update(_Holder(0, stuck=False) for _ in range(4))
    assert outflow.window(128 * 1024) == 16 * 1024 * 2  # 64 KiB / 4, not below a quarter of the cap
    outflow.transports.update(_Holder(0, stuck=False) for _ in range(60))
    assert outflow.window(128 * 1024) == 32 * 1024  # 1 KiB each would be below cap // 4
    assert Outflow(high=BIG, low=0, stall_s=2.0).window(128 * 1024) == 128 * 1024  # no budget


async def test_a_client_reading_through_the_smallest_window_gets_everything_in_order() -> None:
    """The window shrinks to a quarter of the cap with many clients: it holds the client back, and
    its read receipts reopen it until everything has arrived, in order."""
    outflow = Outflow(high=BIG, low=0, stall_s=2.0, budget=1)
    outflow.transports.update(_Holder(0, stuck=False) for _ in range(50))  # other clients' share
    server, client = _socket_pair()
    transport = WebSocketTransport(server, _open_ws(), "json", 1_000_000, outflow, window=8192)
    assert outflow.window(8192) == 2048
    parser = FrameProtocol(client=True, extensions=[])
    ids: list[str] = []
    held_seen = False

    async def read_and_answer() -> None:
        nonlocal held_seen
        part = ""
        while len(ids) < 400:
            parser.receive_bytes(await client.receive_some(4096))
            for f in parser.received_frames():
                if f.opcode is Opcode.PING:
                    await client.send_all(parser.pong(bytes(f.payload)))
                    continue
                part += str(f.payload)
                if f.frame_finished:
                    ids.append(part.split('"id":"', 1)[1].split('"', 1)[0])
                    part = ""
            held_seen = held_seen or transport.held

    async with trio.open_nursery() as nursery:
        await nursery.start(outflow.run)
        nursery.start_soon(_read_pongs, server, transport)
        nursery.start_soon(transport.write_loop, 60.0, 1.0)
        for m in _messages(400):  # ~92 KB, 45 times the window
            transport.send(m)
            await trio.lowlevel.checkpoint()
        with trio.fail_after(5):
            await read_and_answer()
        nursery.cancel_scope.cancel()
    assert ids == [f"m{i}" for i in range(400)]
    assert held_seen  # the 2 KiB window held it back, and each read receipt reopened it
    await server.aclose()
    await client.aclose()


async def test_one_scan_sends_every_idle_transport_its_heartbeat(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The Outflow's scan, not a deadline per writer task, sends the idle HEARTBEAT: one per idle
    period on each transport, none while frames go out more often than that."""
    outflow = Outflow(high=BIG, low=0, stall_s=2.0)
    pairs = [_socket_pair() for _ in range(3)]
    transports = [WebSocketTransport(s, _open_ws(), "json", 100, outflow) for s, _ in pairs]
    heartbeats = [0, 0, 0]
    messages = [0, 0, 0]

    async def count(i: int, client: trio.SocketStream) -> None:
        parser = FrameProtocol(client=True, extensions=[])
        while data := await client.receive_some(65536):
            parser.receive_bytes(data)
            for f in parser.received_frames():
                if str(f.payload) == '{"action":0}':
                    heartbeats[i] += 1
                else:
                    messages[i] += 1

    async with trio.open_nursery() as nursery:
        await nursery.start(outflow.run)
        for i, ((_, client), transport) in enumerate(zip(pairs, transports, strict=True)):
            nursery.start_soon(transport.write_loop, 2.0, 1.0)
            nursery.start_soon(count, i, client)
        for m in _messages(7):  # transport 0 gets a message every second for 7 s
            transports[0].send(m)
            await trio.sleep(1.0)  # virtual time: the interval the test is about
        nursery.cancel_scope.cancel()
    assert messages == [7, 0, 0]
    assert heartbeats[0] == 0
    assert heartbeats[1] == heartbeats[2] == 3  # at 2, 4 and 6 s (each at most a scan late)
    for server, client in pairs:
        await server.aclose()
        await client.aclose()
