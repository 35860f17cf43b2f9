"""Persisted channels on real frontend processes, with SQLite and with a real PostgreSQL.

- A subscriber cut off while far more is published than the memory log keeps resumes with a
  gap-free replay from the store (0 lost, RESUMED, no 90003); the same on a channel no rule
  persists is reported as a discontinuity (90003), so the test shows the store made the
  difference.
- History survives a restart of the frontend (the whole standalone "cluster"): the epoch
  continues from the store, and an attach from a serial published before the restart is
  replayed from the store.
- Pruning by a rule's size limit is visible in /metrics.
- ``make run-standalone`` (its command line, from ``make -n``) keeps persisted history in SQLite
  across a Ctrl-C and a restart.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import continuity
from continuity import ChannelEvent
from kernel.protocol import Action, Flag, ProtocolMessage
from tests.support.fixtures import start_tunnel
from tests.support.postgres import running_postgres
from tests.support.procs import API_KEY, FrontendProcess, _open_log, run_frontend
from tests.support.raw import raw_connect
from tests.support.rest import rest_call
from tests.support.streams import FAST_BACKOFF, assert_contiguous, wait_until, wait_until_async

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

MEMORY = 16  # channel_log_max_messages: the memory window, in messages
RULES = {"p:*": {"persist": "1h", "max_entries": 500}}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'history.sqlite3'}"
        return
    with running_postgres(tmp_path / "pg") as dsn:
        yield dsn


@asynccontextmanager
async def persisted_frontend(tmp: Path, store_url: str, **over: Any) -> AsyncIterator[FrontendProcess]:
    config = {
        "channel_log_max_messages": MEMORY,
        "max_idle_interval_ms": 2_000,
        "connection_state_ttl_ms": 30_000,
        "history_store": store_url,
        "channels": RULES,
        **over,
    }
    async with run_frontend(tmp, **config) as fe:
        yield fe


async def publish_numbered(url: str, channel: str, count: int) -> list[str]:
    async with continuity.connect(url, key=API_KEY, backoff=FAST_BACKOFF) as conn:
        ch = conn.channel(channel)
        serials = []
        for n in range(count):
            [serial] = await ch.publish("n", n)
            assert serial is not None
            serials.append(serial)
        return serials


async def test_resume_from_past_the_memory_window_loses_nothing(
    tmp_path: Path, store_url: str, nursery: trio.Nursery
) -> None:
    with trio.fail_after(90):
        async with persisted_frontend(tmp_path / "fe", store_url) as fe:
            tunnel = await start_tunnel(nursery, fe.port)
            got: dict[str, list[continuity.Message]] = {"p:resume": [], "m:resume": []}
            async with continuity.connect(tunnel.url, key=API_KEY, backoff=FAST_BACKOFF) as sub_conn:
                conn_id = sub_conn.id

                async def follow(name: str, sub: continuity.Subscription) -> None:
                    async for msg in sub:
                        got[name].append(msg)

                async with (
                    sub_conn.channel("p:resume").subscribe() as psub,
                    sub_conn.channel("m:resume").subscribe() as msub,
                    trio.open_nursery() as inner,
                ):
                    inner.start_soon(follow, "p:resume", psub)
                    inner.start_soon(follow, "m:resume", msub)
                    before = await publish_numbered(fe.url, "p:resume", 5)
                    await publish_numbered(fe.url, "m:resume", 5)
                    await wait_until(lambda: len(got["p:resume"]) == 5 and len(got["m:resume"]) == 5)
                    tunnel.cut_forever()
                    # Ten memory windows' worth while the subscriber is away.
                    published = before + await publish_numbered(fe.url, "p:resume", 10 * MEMORY)
                    await publish_numbered(fe.url, "m:resume", 10 * MEMORY)
                    tunnel.restore()
                    await wait_until(lambda: len(got["p:resume"]) >= len(published))
                    await wait_until(lambda: len(lost(sub_conn, "m:resume")) > 0)
                    inner.cancel_scope.cancel()
                assert sub_conn.id == conn_id
            events = [e for e in sub_conn.event_log if isinstance(e, ChannelEvent) and e.attached]
    persisted = [m.serial for m in got["p:resume"]]
    assert persisted == published, "lost, duplicated or reordered on the persisted channel"
    assert_contiguous(persisted)
    p_events = [e for e in events if e.channel == "p:resume"]
    assert len(p_events) >= 2 and all(e.resumed and e.reason is None for e in p_events[1:]), p_events
    # The control: the same cut on a channel kept in memory only is a reported discontinuity.
    m_lost = lost(sub_conn, "m:resume")
    assert m_lost[0].reason is not None and m_lost[0].reason.code == 90003
    assert not lost(sub_conn, "p:resume")


def lost(conn: continuity.Connection, channel: str) -> list[ChannelEvent]:
    return [
        e
        for e in conn.event_log
        if isinstance(e, ChannelEvent) and e.channel == channel and e.reason is not None
    ]


async def test_history_survives_a_restart_and_the_epoch_continues(tmp_path: Path, store_url: str) -> None:
    with trio.fail_after(90):
        async with persisted_frontend(tmp_path / "fe1", store_url) as fe:
            published = await publish_numbered(fe.url, "p:restart", 3 * MEMORY)
        # The whole (standalone) cluster is gone, memory and all; the store is not.
        async with persisted_frontend(tmp_path / "fe2", store_url) as fe:
            async with raw_connect(fe.url, key=API_KEY) as raw:
                await raw.recv_action(Action.CONNECTED)
                # A subscriber that had seen only the 5th message asks for the rest.
                await raw.send(
                    ProtocolMessage(action=Action.ATTACH, channel="p:restart", channel_serial=published[4])
                )
                attached = await raw.recv_action(Action.ATTACHED)
                assert attached.has(Flag.RESUMED) and attached.error is None, attached
                replayed: list[str] = []
                while len(replayed) < len(published) - 5:
                    msg = await raw.recv_action(Action.MESSAGE)
                    replayed += [m["serial"] for m in msg.messages or []]
                assert replayed == published[5:]
            # New publishes continue the same epoch, right after the last one stored.
            after = await publish_numbered(fe.url, "p:restart", 1)
            metrics = await fe.metrics()
    epoch, _, last = published[-1].rpartition(":")
    assert after == [f"{epoch}:{int(last) + 1}"]
    assert metrics["continuity_history_store_replays_total"] >= 1
    assert metrics["continuity_history_written_total"] >= 1


async def test_pruning_by_size_is_counted(tmp_path: Path, store_url: str) -> None:
    rules = {"p:*": {"persist": "1h", "max_entries": 10}}
    with trio.fail_after(90):
        async with persisted_frontend(
            tmp_path / "fe", store_url, channels=rules, history_prune_interval_s=1.0
        ) as fe:
            await publish_numbered(fe.url, "p:prune", 30)

            async def pruned() -> float:
                return (await fe.metrics()).get("continuity_history_pruned_total", 0.0)

            async def pruned_at_least(n: int) -> bool:
                return await pruned() >= n

            await wait_until_async(lambda: pruned_at_least(20))
            assert await pruned() == 20


async def rewound(url: str, channel: str, rewind: str, expect: int) -> tuple[ProtocolMessage, list[str]]:
    async with raw_connect(url, key=API_KEY) as raw:
        await raw.recv_action(Action.CONNECTED)
        await raw.send(ProtocolMessage(action=Action.ATTACH, channel=channel, params={"rewind": rewind}))
        attached = await raw.recv_action(Action.ATTACHED)
        got: list[str] = []
        while len(got) < expect:
            msg = await raw.recv_action(Action.MESSAGE)
            got += [m["serial"] for m in msg.messages or []]
        # Then live, right after: nothing rewound twice, nothing skipped.
        [live] = await publish_numbered(url, channel, 1)
        msg = await raw.recv_action(Action.MESSAGE)
        assert [m["serial"] for m in msg.messages or []] == [live]
        return attached, got


async def test_rewind_reaches_into_the_store_past_the_memory_window(tmp_path: Path, store_url: str) -> None:
    with trio.fail_after(90):
        async with persisted_frontend(tmp_path / "fe", store_url) as fe:
            published = await publish_numbered(fe.url, "p:rewind", 3 * MEMORY)
            attached, got = await rewound(fe.url, "p:rewind", str(2 * MEMORY), 2 * MEMORY)
            assert got == published[-2 * MEMORY :]
            assert attached.has(Flag.HAS_BACKLOG) and attached.params == {"rewind": str(2 * MEMORY)}
            epoch, _, seq = got[0].rpartition(":")
            assert attached.channel_serial == f"{epoch}:{int(seq) - 1}"
            _, got = await rewound(fe.url, "p:rewind", "1h", 3 * MEMORY + 1)
            assert got == [*published, *got[3 * MEMORY :]] and len(got) == 3 * MEMORY + 1


def standalone_argv() -> list[str]:
    """``make run-standalone``'s command line (from ``make -n``), on port 0, channels ``p:*`` persisted."""
    out = subprocess.run(
        ["make", "-s", "-n", "run-standalone", "PERSIST=p:*=1h"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=30,
    ).stdout.replace("\\\n", " ")
    [line] = [ln for ln in out.splitlines() if " -m frontend " in ln]
    argv = shlex.split(line)
    assert argv[argv.index("--port") + 1] == "8080"
    argv[argv.index("--port") + 1] = "0"
    return [sys.executable, *argv[1:]]


@asynccontextmanager
async def standalone(cwd: Path) -> AsyncIterator[int]:
    """The frontend ``make run-standalone`` runs, in ``cwd`` (its SQLite file is relative to it);
    stopped with SIGINT, as Ctrl-C does. Yields its port."""
    port_file = cwd / "port"
    port_file.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTINUITY_")}
    env.update(CONTINUITY_PORT_FILE=str(port_file), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    log = _open_log(cwd / "frontend.log")
    try:
        proc = await trio.lowlevel.open_process(
            standalone_argv(), cwd=str(cwd), env=env, stdout=log, stderr=subprocess.STDOUT
        )
    finally:
        log.close()
    try:
        started = lambda: bool(port_file.exists() and port_file.read_text())  # noqa: E731
        await wait_until(lambda: proc.poll() is not None or started())
        assert proc.returncode is None, (cwd / "frontend.log").read_text()[-3000:]
        yield int(port_file.read_text().split()[0])
    finally:
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            await proc.wait()


async def test_make_run_standalone_keeps_history_across_a_restart_on_sqlite(tmp_path: Path) -> None:
    """``make run-standalone`` persists channels in SQLite under .standalone/: stopped with Ctrl-C
    and started again, REST history lists every message and the serials continue."""
    with trio.fail_after(90):
        async with standalone(tmp_path) as port:
            published = await publish_numbered(f"ws://127.0.0.1:{port}", "p:standalone", 25)
        assert (tmp_path / ".standalone" / "history.sqlite3").exists()
        async with standalone(tmp_path) as port:
            status, body = await rest_call(port, "GET", "/channels/p:standalone/messages?limit=100")
            after = await publish_numbered(f"ws://127.0.0.1:{port}", "p:standalone", 1)
    assert status == 200, body
    assert [m["serial"] for m in body] == published[::-1]
    epoch, _, last = published[-1].rpartition(":")
    assert after == [f"{epoch}:{int(last) + 1}"]
