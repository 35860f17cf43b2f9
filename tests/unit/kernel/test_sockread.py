"""``kernel.sockread.read_ready``: bytes as soon as there are any, b"" at EOF, and a closed socket is
an error, never a read of whatever descriptor now has its number."""

from __future__ import annotations

import trio
import trio.testing

from kernel.sockread import read_ready


async def test_it_waits_for_bytes_then_reads_them_and_sees_eof() -> None:
    a, b = trio.socket.socketpair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            got: list[bytes] = []

            async def reader() -> None:
                got.append(await read_ready(a, 1024))  # nothing yet: it waits
                got.append(await read_ready(a, 1024))

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            await b.send(b"hello")
            await trio.testing.wait_all_tasks_blocked()
            b.shutdown(trio.socket.SHUT_WR)
    assert got == [b"hello", b""]
    a.close()
    b.close()


async def test_a_closed_socket_is_an_error_not_another_descriptor() -> None:
    a, b = trio.socket.socketpair()
    a.close()
    other, spare = trio.socket.socketpair()  # may take the closed socket's number
    await spare.send(b"not yours")
    try:
        with trio.fail_after(5):
            await read_ready(a, 1024)
    except trio.ClosedResourceError:
        pass
    else:
        raise AssertionError("read a closed socket")
    for s in (b, other, spare):
        s.close()
