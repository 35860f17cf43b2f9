"""continuity-admin against a live cluster: members, channels, connections, kick, keys (add, revoke,
reload; SIGHUP) with 0 dropped connections under load, and drain."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

import continuity
from continuity import ConnectionState
from tests.integration.cluster.streams import Publisher, Subscriber, check_exactly_once
from tests.support.cluster import LocalCluster, run_cluster
from tests.support.procs import API_KEY, KEY_NAME, REPO
from tests.support.streams import FAST_BACKOFF, wait_until

pytestmark = pytest.mark.integration

FRONTENDS = (("fe-a1", "a"), ("fe-b1", "b"))
NEW_KEY = "app.added"
NEW_SECRET = "a-key-added-at-runtime-0123456789"


async def admin(cluster: LocalCluster, *argv: str, ok: bool = True) -> Any:
    """Run ``python -m router admin --json ...`` against the router; its decoded stdout."""
    url = "http://" + cluster.router_url().removeprefix("ws://")
    done = await trio.run_process([sys.executable, "-m", "router", "admin", "--url", url, "--json", *argv],
                                  cwd=str(REPO), capture_stdout=True, capture_stderr=True, check=False)
    assert (done.returncode == 0) is ok, (argv, done.returncode, done.stderr.decode())
    return json.loads(done.stdout) if done.stdout.strip() else None


async def test_admin_cli(tmp_path: Path) -> None:
    async with (
        run_cluster(tmp_path / "cluster", frontends=FRONTENDS) as cluster,
        trio.open_nursery() as nursery,
    ):
        url = cluster.router_url()
        with trio.fail_after(120):
            members = await admin(cluster, "members")
            assert {m["node_id"] for m in members} == {"rt1", "fe-a1", "fe-b1"}

            sub = await nursery.start(Subscriber("admin:chat").run, url)
            assert sub.conn is not None
            channels = await admin(cluster, "channels")
            [row] = [c for c in channels if c["channel"] == "admin:chat"]
            assert row["home"] in ("fe-a1", "fe-b1") and row["occupancy"] == 1
            assert row["replica"] in ("fe-a1", "fe-b1") and row["replica"] != row["home"]
            connections = await admin(cluster, "connections")
            assert sub.conn.id in {c["connection_id"] for c in connections}

            # keys: a runtime key works at once; revoked, it is refused
            await admin(cluster, "keys", "add", NEW_KEY, NEW_SECRET)
            listed = await admin(cluster, "keys", "list")
            assert all(NEW_KEY in row["keys"].split() for row in listed) and len(listed) == 2
            async with continuity.connect(url, key=f"{NEW_KEY}:{NEW_SECRET}", backoff=FAST_BACKOFF) as conn:
                assert conn.state is ConnectionState.CONNECTED
            await admin(cluster, "keys", "revoke", NEW_KEY)
            with pytest.raises(continuity.ConnectionFailedError):
                async with continuity.connect(url, key=f"{NEW_KEY}:{NEW_SECRET}", backoff=FAST_BACKOFF):
                    pass
            await admin(cluster, "keys", "revoke", "app.nope", ok=False)

            # kick: the client gets ERROR 80017 and FAILED, and its connection is gone everywhere
            async with continuity.connect(url, key=API_KEY, backoff=FAST_BACKOFF) as victim:
                [kicked] = await admin(cluster, "kick", str(victim.id))
                assert kicked["kicked"] == victim.id
                await wait_until(lambda: victim.state is ConnectionState.FAILED)
                assert victim.error_reason is not None and victim.error_reason.code == 80017
            assert victim.id not in {c["connection_id"] for c in await admin(cluster, "connections")}
            await admin(cluster, "kick", "no-such-connection", ok=False)
            nursery.cancel_scope.cancel()


async def test_key_reload_under_load_drops_no_connection(tmp_path: Path) -> None:
    async with (
        run_cluster(tmp_path / "cluster", frontends=FRONTENDS) as cluster,
        trio.open_nursery() as nursery,
    ):
        url = cluster.router_url()
        with trio.fail_after(150):
            subs = [await nursery.start(Subscriber(f"load:{i % 4}").run, url) for i in range(24)]
            pubs = [Publisher(f"load:{i}") for i in range(4)]
            pub_conns = [await nursery.start(lambda p=p, **kw: p.run(url, rate=50, **kw)) for p in pubs]
            # The config file gains a key: SIGHUP to one frontend, the CLI reload to both.
            for name in ("fe-a1", "fe-b1"):
                path = cluster.nodes[name].config_path
                path.write_text(path.read_text() + f'\n[keys."{NEW_KEY}"]\nsecret = "{NEW_SECRET}"\n')
            for _ in range(3):
                proc = cluster.nodes["fe-a1"].process
                assert proc is not None
                proc.send_signal(signal.SIGHUP)
                reloaded = await admin(cluster, "keys", "reload")
                assert all(set(row["keys"].split()) == {KEY_NAME, NEW_KEY} for row in reloaded)
            await wait_until(lambda: "keys.reloaded" in cluster.nodes["fe-a1"].log_text())
            async with continuity.connect(url, key=f"{NEW_KEY}:{NEW_SECRET}", backoff=FAST_BACKOFF) as conn:
                assert conn.state is ConnectionState.CONNECTED
            await wait_until(lambda: all(len(p.acked) >= 20 for p in pubs))
            # 0 dropped: every connection still on its first transport, with its first id
            conns = [s.conn for s in subs] + pub_conns
            dropped = [c.id for c in conns if c is None or c.transports_opened != 1
                       or c.state is not ConnectionState.CONNECTED]
            assert dropped == [], dropped
            for p in pubs:
                p.stop.set()
            for p in pubs:
                await p.finished.wait()
            last = {p.channel: p.acked[-1][1] for p in pubs}
            await wait_until(lambda: all(s.caught_up(last[s.channel]) for s in subs))
            assert all(s.conn is not None and s.conn.id == s.first_id for s in subs)
            for i, p in enumerate(pubs):
                assert not p.failed
                check_exactly_once(p, [s for s in subs if s.channel == f"load:{i}"])
            print(f"key reload under load: {len(conns)} connections, {sum(len(p.acked) for p in pubs)} "
                  f"publishes, 3 SIGHUP + 3 CLI reloads, dropped={len(dropped)}")
            nursery.cancel_scope.cancel()


async def test_drain(tmp_path: Path) -> None:
    async with run_cluster(tmp_path / "cluster", frontends=(*FRONTENDS, ("fe-b2", "b"))) as cluster:
        with trio.fail_after(60):
            [row] = await admin(cluster, "drain", "fe-b2")
            assert row == {"node_id": "fe-b2", "draining": True}
            proc = cluster.nodes["fe-b2"].process
            assert proc is not None
            assert await proc.wait() == 0
            assert "frontend.draining" in cluster.nodes["fe-b2"].log_text()
            await admin(cluster, "drain", "fe-zz", ok=False)
