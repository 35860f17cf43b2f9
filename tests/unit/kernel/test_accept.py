"""kernel/accept: every connection waiting in the listen queue is accepted and served."""

from __future__ import annotations

from functools import partial

import trio
import trio.testing

from kernel.accept import serve_listeners


async def _echo_once(stream: trio.abc.Stream) -> None:
    async with stream:
        data = await stream.receive_some(64)
        await stream.send_all(b"ok:" + data)


async def test_a_burst_of_connections_is_accepted_and_each_gets_its_handler() -> None:
    with trio.fail_after(10):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve_listeners, _echo_once, listeners))
            answers: list[bytes] = []

            async def client(i: int) -> None:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                async with stream:
                    await stream.send_all(str(i).encode())
                    answers.append(await stream.receive_some(64))

            async with trio.open_nursery() as clients:
                for i in range(300):  # more than one batch's worth may wait at once
                    clients.start_soon(client, i)
            assert sorted(answers) == sorted(b"ok:%d" % i for i in range(300))
            nursery.cancel_scope.cancel()
        for listener in listeners:
            await listener.aclose()


class _PairListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener that is not a SocketListener: hands out the server ends of memory stream pairs."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[trio.abc.Stream](10)

    async def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        await self.send.send(server)
        return client

    async def accept(self) -> trio.abc.Stream:
        return await self.receive.receive()

    async def aclose(self) -> None:
        return None


async def test_a_non_socket_listener_is_served_one_at_a_time() -> None:
    with trio.fail_after(10):
        listener = _PairListener()
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve_listeners, _echo_once, [listener]))
            client = await listener.connect()
            await client.send_all(b"x")
            assert await client.receive_some(64) == b"ok:x"
            nursery.cancel_scope.cancel()
