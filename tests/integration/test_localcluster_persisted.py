"""Persisted history across ``make cluster-down && make cluster-up`` on a real PostgreSQL.

``make cluster-up-pg`` is ``deploy/localcluster.py up --history-store <dsn> --persist ...``; this
drives the same script (on shifted ports, in a temporary state dir) against a PostgreSQL server the
test starts. Messages published before ``down`` (a SIGTERM drain of every node, then SIGKILL of
stragglers) are all there after ``up``: REST history through a router lists every one, newest
first; a subscriber holding a serial from before the restart is replayed the rest, RESUMED, in
order, once; and the channel's serials continue the same epoch. The SQLite standalone case (one
frontend restarted on its own file) is ``tests/integration/test_persisted.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

import continuity
from kernel.protocol import Action, Flag, ProtocolMessage
from tests.integration.test_localcluster import OFFSETS, cli, load_script
from tests.support.postgres import running_postgres
from tests.support.procs import API_KEY
from tests.support.raw import raw_connect
from tests.support.rest import rest_call
from tests.support.streams import FAST_BACKOFF

pytestmark = pytest.mark.integration

CHANNEL = "p:down-up"
ROUTER_PORT = 8080  # rt1 in deploy/local, before the offset


async def publish(url: str, count: int, start: int = 0) -> list[str]:
    async with continuity.connect(url, key=API_KEY, backoff=FAST_BACKOFF) as conn:
        ch = conn.channel(CHANNEL)
        out = []
        for n in range(start, start + count):
            [serial] = await ch.publish("n", n)
            assert serial is not None
            out.append(serial)
        return out


async def up(state_dir: Path, args: list[str], offset: int | None = None) -> int:
    """``localcluster.py up`` on the first free offset (or ``offset``); returns the offset."""
    for candidate in (offset,) if offset is not None else tuple(reversed(OFFSETS)):
        code, out, err = await cli(state_dir, "up", "--port-offset", str(candidate), *args, check=False)
        if code == 0:
            return candidate
        if "is in use" not in err:
            break
    raise AssertionError(f"up failed:\n{out}\n{err}")


async def history(port: int) -> list[dict[str, Any]]:
    status, body = await rest_call(port, "GET", f"/channels/{CHANNEL}/messages?limit=100")
    assert status == 200, body
    return body


async def test_persisted_history_survives_cluster_down_then_up(tmp_path: Path) -> None:
    state_dir = tmp_path / "cluster"
    with running_postgres(tmp_path / "pg") as dsn, trio.fail_after(200):
        args = ["--history-store", dsn, "--persist", "p:*=1h"]
        offset = await up(state_dir, args)
        try:
            url = f"ws://127.0.0.1:{ROUTER_PORT + offset}"
            published = await publish(url, 30)
            assert [m["serial"] for m in await history(ROUTER_PORT + offset)] == published[::-1]
            await cli(state_dir, "down")  # make cluster-down: nothing of the cluster is left running
            await up(state_dir, args, offset)  # make cluster-up-pg
            stored = await history(ROUTER_PORT + offset)
            async with raw_connect(url, key=API_KEY) as raw:
                await raw.recv_action(Action.CONNECTED)
                await raw.send(
                    ProtocolMessage(action=Action.ATTACH, channel=CHANNEL, channel_serial=published[9])
                )
                attached = await raw.recv_action(Action.ATTACHED)
                replayed: list[str] = []
                while len(replayed) < len(published) - 10:
                    msg = await raw.recv_action(Action.MESSAGE)
                    replayed += [m["serial"] for m in msg.messages or []]
            after = await publish(url, 1, start=30)
        finally:
            await cli(state_dir, "down", check=False)
    assert [m["serial"] for m in stored] == published[::-1], "lost or reordered across down/up"
    assert [json.loads(m["data"]) for m in stored] == list(reversed(range(30)))
    assert attached.has(Flag.RESUMED) and attached.error is None, attached
    assert replayed == published[10:]
    epoch, _, last = published[-1].rpartition(":")
    assert after == [f"{epoch}:{int(last) + 1}"], "the channel's serials continue after the restart"


def test_persist_in_a_cluster_needs_a_shared_store() -> None:
    """localcluster refuses --persist without a PostgreSQL store (each frontend's SQLite would hold
    only what it wrote as a home), before any frontend refuses it."""
    lc = load_script()
    specs = lc.topology(1000)
    with pytest.raises(lc.ClusterError, match="--history-store postgresql"):
        lc.with_history(specs, None, ["p:*=1h"])
    with pytest.raises(lc.ClusterError, match="standalone"):
        lc.with_history(specs, "sqlite:/tmp/h.sqlite3", ["p:*=1h"])
    shared = {s.name: s for s in lc.with_history(specs, "postgresql://h/db", ["p:*=1h"])}
    assert shared["fe-a1"].config["history_store"] == "postgresql://h/db"
    assert shared["fe-a1"].config["channels"] == {"p:*": {"persist": "1h"}}
    assert lc.with_history(specs, None, []) == specs  # no rules: no store needed
