"""Persisted channels in a real cluster on one real PostgreSQL (started by the test).

The history of a persisted channel survives a kill -9 of its home, then the loss of both copies
of its in-memory log with a restart of the whole cluster: afterwards the epoch continues from the
store, and a subscriber holding a serial from before both is replayed everything after it, in
order, once, with RESUMED; a page of history untilAttach ends exactly at the attach point.
"""

from __future__ import annotations

import base64
import json
import signal
from pathlib import Path

import pytest
import trio

import continuity
from frontend.history import read_stored, until_attach_cursor
from frontend.persistence import open_store
from kernel.protocol import Action, Flag, ProtocolMessage
from tests.support.cluster import run_cluster
from tests.support.postgres import running_postgres
from tests.support.procs import API_KEY, _dechunk
from tests.support.raw import raw_connect
from tests.support.streams import FAST_BACKOFF

pytestmark = pytest.mark.integration

CHANNEL = "p:cluster"
FRONTENDS = (("fe-a1", "a"), ("fe-a2", "a"), ("fe-b1", "b"))


async def get(port: int, path: str, auth: str) -> tuple[int, dict[str, str], bytes]:
    """A minimal HTTP GET with an Authorization header: (status, headers, body)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        head = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {auth}\r\n\r\n"
        await stream.send_all(head.encode())
        chunks = []
        while chunk := await stream.receive_some(65536):
            chunks.append(chunk)
    top, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = top.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return int(lines[0].split(" ", 2)[1]), headers, body


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(key.encode()).decode()


async def publish(url: str, count: int, start: int = 0) -> list[str]:
    async with continuity.connect(url, key=API_KEY, backoff=FAST_BACKOFF) as conn:
        ch = conn.channel(CHANNEL)
        out = []
        for n in range(start, start + count):
            [serial] = await ch.publish("n", n)
            assert serial is not None
            out.append(serial)
        return out


async def test_history_survives_a_home_kill_and_a_whole_cluster_restart(tmp_path: Path) -> None:
    with running_postgres(tmp_path / "pg") as dsn, trio.fail_after(150):
        config = {
            "history_store": dsn,
            "channels": {"p:*": {"persist": "1h"}},
            "channel_log_max_messages": 16,
        }
        async with run_cluster(tmp_path / "cluster", frontends=FRONTENDS, **config) as cluster:
            url = cluster.router_url()
            published = await publish(url, 30)
            home = await cluster.home_of(CHANNEL)
            await cluster.kill(home)
            await cluster.wait_converged(dead=[home])
            published += await publish(url, 10, start=30)
            # Every frontend dies at once: both in-memory copies of the log are gone.
            for fe in cluster.frontends:
                if fe.running:
                    await cluster.stop(fe.name, signal.SIGKILL)
            for fe in cluster.frontends:
                await cluster.start(fe.name)
            await cluster.wait_converged()
            async with raw_connect(url, key=API_KEY) as raw:
                await raw.recv_action(Action.CONNECTED)
                await raw.send(
                    ProtocolMessage(action=Action.ATTACH, channel=CHANNEL, channel_serial=published[4])
                )
                attached = await raw.recv_action(Action.ATTACHED)
                assert attached.has(Flag.RESUMED) and attached.error is None, attached
                replayed: list[str] = []
                while len(replayed) < len(published) - 5:
                    msg = await raw.recv_action(Action.MESSAGE)
                    replayed += [m["serial"] for m in msg.messages or []]
            assert replayed == published[5:]
            after = await publish(url, 1, start=40)
            # The same history over HTTP, through the router, from whichever frontend it picks.
            router_port = int(url.rsplit(":", 1)[1])
            status, _, body = await get(
                router_port, f"/channels/{CHANNEL}/messages?limit=100", basic(API_KEY)
            )
            assert status == 200, body
            over_http = [m["serial"] for m in json.loads(body)]
        store = open_store(dsn)
        await store.open()
        try:
            page = await read_stored(store, CHANNEL, limit=100, cursor=until_attach_cursor(published[-1]))
        finally:
            await store.close()
    epoch, _, last = published[-1].rpartition(":")
    assert after == [f"{epoch}:{int(last) + 1}"], "the epoch continues from the store"
    assert [m["serial"] for m in page.messages] == list(reversed(published))
    assert [json.loads(m["data"]) for m in page.messages] == list(reversed(range(40)))
    assert over_http == list(reversed([*published, *after]))
