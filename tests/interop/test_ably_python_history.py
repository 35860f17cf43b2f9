"""ably-python 3.x ``channel.history()`` against a real frontend: its REST client (the realtime
client publishes), JSON and msgpack, a memory-only and a persisted channel, paged backwards and read
forwards. The realtime client's own history() builds its URL from the endpoint and the default port
only, so it is tested through a forwarder on port 80 of a loopback address (skipped where port 80
cannot be bound)."""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path

import pytest
import trio

from tests.interop._harness import make_jwt, python_script, run_frontend

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("binary", [pytest.param(True, id="msgpack"), pytest.param(False, id="json")])
@pytest.mark.parametrize("channel", ["mem:py", "p:py"])
async def test_ably_python_history(tmp_path: Path, binary: bool, channel: str) -> None:
    store = {"history_store": f"sqlite:{tmp_path / 'h.sqlite3'}", "channels": {"p:*": {"persist": "1h"}}}
    async with run_frontend(tmp_path, **store) as fe:
        config = {
            "port": fe.port,
            "token": make_jwt(client_id=None, capability={"*": ["*"]}),
            "binary": binary,
            "channel": channel,
            "count": 12,
            "limit": 5,
        }
        with trio.fail_after(60):
            async with python_script(tmp_path, "ably_history.py", config) as script:
                result = await script.expect("result")
    assert len(result["backwards"]) == 12 and result["pages"] == 3
    assert result["forwards"] == list(reversed(result["backwards"]))
    assert [d["n"] if isinstance(d, dict) else d for d in result["data"]] == list(range(11, -1, -1))
    epoch = result["forwards"][0].rpartition(":")[0]
    assert result["forwards"] == [f"{epoch}:{n}" for n in range(1, 13)]


async def _forward(listeners: list[trio.SocketListener], port: int) -> None:
    """Forward every connection to ``listeners`` to the frontend on 127.0.0.1:``port``."""

    async def pipe(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await src.receive_some(65536):
                await dst.send_all(data)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await dst.aclose()

    async def handle(client: trio.SocketStream) -> None:
        async with client, await trio.open_tcp_stream("127.0.0.1", port) as upstream:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pipe, client, upstream)
                nursery.start_soon(pipe, upstream, client)

    await trio.serve_listeners(handle, listeners)


async def port_80_listeners() -> tuple[str, list[trio.SocketListener]]:
    """Listeners on port 80 of a loopback address no other test uses (ably-python's realtime client
    builds its REST URLs from the endpoint and the default port only)."""
    for last in range(1, 30):
        host = f"127.80.14.{last}"
        try:
            return host, await trio.open_tcp_listeners(80, host=host)
        except PermissionError:
            pytest.skip("binding port 80 needs root or CAP_NET_BIND_SERVICE")
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    pytest.skip("port 80 is taken on every loopback address tried")


@pytest.mark.parametrize("channel", ["mem:py-rt", "p:py-rt"])
async def test_ably_python_realtime_channel_history(
    tmp_path: Path, channel: str, nursery: trio.Nursery
) -> None:
    """AblyRealtime's own channel.history(), which can reach only port 80, through a forwarder."""
    store = {"history_store": f"sqlite:{tmp_path / 'h.sqlite3'}", "channels": {"p:*": {"persist": "1h"}}}
    async with run_frontend(tmp_path, **store) as fe:
        host, listeners = await port_80_listeners()
        nursery.start_soon(_forward, listeners, fe.port)
        config = {
            "port": fe.port,
            "host": host,
            "token": make_jwt(client_id=None, capability={"*": ["*"]}),
            "binary": True,
            "channel": channel,
            "count": 12,
            "limit": 5,
        }
        with trio.fail_after(60):
            async with python_script(tmp_path, "ably_history.py", config) as script:
                result = await script.expect("result")
    rt = result["realtime"]
    assert rt["pages"] == 3 and rt["backwards"] == result["backwards"] and len(rt["backwards"]) == 12
    assert rt["forwards"] == list(reversed(rt["backwards"]))
    assert [d["n"] if isinstance(d, dict) else d for d in rt["data"]] == list(range(11, -1, -1))
