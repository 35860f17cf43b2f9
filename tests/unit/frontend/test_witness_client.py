"""The frontend's witness client asks each witness router one request at a time, so the router
decides them in the order they were sent and their answers are applied in that order.

Chaos seed 28473 (t 94.4-111.9 s): fe-a1's grant request and its release were in flight together;
the witness decided the release first and the grant second, the answers came back the other way
round, and fe-a1 applied the release last: it believed it held nothing while the witness kept zone
a's place for it, until fe-a1's restart was taken for the loss of zone a's data.

A real TCP server on 127.0.0.1 plays the witness router and holds its first answer.
"""

from __future__ import annotations

import functools
import json
import socket
import struct
from types import SimpleNamespace
from typing import Any

import h11
import trio
import trio.testing

from frontend.witness_client import WitnessClient


class FakeWitness:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.open = 0
        self.most_open = 0
        self.hold_first = trio.Event()
        self.got = trio.Event()

    async def serve(self, stream: trio.SocketStream) -> None:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            conn = h11.Connection(h11.SERVER)
            body = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(4096))
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            request = json.loads(body)
            self.requests.append(request)
            self.got.set()
            if len(self.requests) == 1:
                await self.hold_first.wait()
            need = request["need"]
            answer = json.dumps({"granted": need, "holder": "a" if need else None}).encode()
            head = [("content-type", "application/json"), ("content-length", str(len(answer)))]
            await stream.send_all(conn.send(h11.Response(status_code=200, headers=head)) or b"")
            await stream.send_all(conn.send(h11.Data(data=answer)) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        finally:
            self.open -= 1
            await stream.aclose()


class Channels:
    """The ChannelService surface the client uses: what to ask, and where the answers go."""

    boot = "boot1"

    def __init__(self, address: str) -> None:
        self.view = SimpleNamespace(peers={"rt-w": SimpleNamespace(client_addr=address)})
        self.need = True
        self.applied: list[tuple[bool, bool]] = []  # (need asked, granted), in the order applied
        self.two_applied = trio.Event()

    def witness_request(self, now_ms: int) -> tuple[list[str], bool, bool, bool]:
        return ["rt-w"], self.need, False, False

    def grant(self, now_ms: int, router: str, sent_ms: int, granted: bool, need: bool, holder: Any,
              *, lost: bool = False, lost_age_ms: int = 0) -> None:  # fmt: skip
        self.applied.append((need, granted))
        if len(self.applied) == 2:
            self.two_applied.set()

    def witness_unanswered(self, need: bool) -> None:
        raise AssertionError("the fake witness answers every request")


async def test_a_release_waits_for_the_grant_request_in_flight_and_is_applied_after_it() -> None:
    witness = FakeWitness()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            serve = functools.partial(trio.serve_tcp, witness.serve, 0, host="127.0.0.1")
            [listener] = await nursery.start(serve)
            port = listener.socket.getsockname()[1]
            channels = Channels(f"127.0.0.1:{port}")
            node = SimpleNamespace(
                channels=channels, config=SimpleNamespace(node_id="fe-a1", zone="a"), wake=lambda: None
            )
            client = WitnessClient(node, "secret")  # type: ignore[arg-type]
            nursery.start_soon(client.run)
            await witness.got.wait()  # the grant request is at the witness, its answer held
            channels.need = False  # zone b is back: nothing needed, a release is due
            for _ in range(3):
                client.poke()  # map changes while the grant request is in flight
                await trio.testing.wait_all_tasks_blocked()
            assert len(witness.requests) == 1  # no release overtakes the grant request
            witness.got = trio.Event()
            witness.hold_first.set()
            await witness.got.wait()  # the release, sent once the grant's answer was applied
            await channels.two_applied.wait()
            nursery.cancel_scope.cancel()
    assert witness.most_open == 1
    assert [r["need"] for r in witness.requests[:2]] == [True, False]
    assert channels.applied[:2] == [(True, True), (False, False)]  # the release is applied last


class ResettingWitness:
    """Reads a request, then resets the connection (a witness router killed mid-request)."""

    def __init__(self) -> None:
        self.resets = 0

    async def serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while conn.next_event() is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(4096))
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.resets += 1
        await stream.aclose()  # RST, not FIN: the client's read fails with ECONNRESET


async def test_a_witness_that_resets_the_connection_is_unreachable_and_the_client_goes_on() -> None:
    # test_zone_loss.py: rt-w was SIGKILLed while fe-a1 and fe-a2 asked it for a grant; the reset
    # (trio.BrokenResourceError, not an OSError) escaped the witness client and ended both frontends.
    witness = ResettingWitness()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            serve = functools.partial(trio.serve_tcp, witness.serve, 0, host="127.0.0.1")
            [listener] = await nursery.start(serve)
            port = listener.socket.getsockname()[1]
            channels = Channels(f"127.0.0.1:{port}")
            unanswered = trio.Semaphore(0)
            channels.witness_unanswered = lambda need: unanswered.release()  # type: ignore[method-assign]
            node = SimpleNamespace(
                channels=channels, config=SimpleNamespace(node_id="fe-a1", zone="a"), wake=lambda: None
            )
            client = WitnessClient(node, "secret")  # type: ignore[arg-type]
            nursery.start_soon(client.run)
            for _ in range(2):  # one reset, then the next round asks again
                await unanswered.acquire()
                client.poke()
            nursery.cancel_scope.cancel()
    assert witness.resets >= 2 and not channels.applied


async def test_a_drained_node_releases_before_it_leaves_after_the_request_in_flight() -> None:
    # Issue 18 (chaos seed 666654006): a drained frontend left the map still holding its zone's place
    # at the witness; its release would have come with the next renewal, after it had gone.
    # ``WitnessClient.leave`` (the drain's driver awaits it) sends it now and waits for the answer.
    witness = FakeWitness()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            serve = functools.partial(trio.serve_tcp, witness.serve, 0, host="127.0.0.1")
            [listener] = await nursery.start(serve)
            port = listener.socket.getsockname()[1]
            channels = Channels(f"127.0.0.1:{port}")
            node = SimpleNamespace(
                channels=channels, config=SimpleNamespace(node_id="fe-b1", zone="b"), wake=lambda: None
            )
            client = WitnessClient(node, "secret")  # type: ignore[arg-type]
            nursery.start_soon(client.run)
            await witness.got.wait()  # a grant request in flight, its answer held
            channels.need = False  # the drain is done: nothing needed any more
            left = trio.Event()

            async def leave() -> None:
                await client.leave()
                left.set()

            nursery.start_soon(leave)
            await trio.testing.wait_all_tasks_blocked()
            assert len(witness.requests) == 1 and not left.is_set()  # it waits for the one in flight
            witness.hold_first.set()
            await left.wait()
            assert [r["need"] for r in witness.requests[:2]] == [True, False]
            assert channels.applied[:2] == [(True, True), (False, False)]  # answered before leaving
            nursery.cancel_scope.cancel()
