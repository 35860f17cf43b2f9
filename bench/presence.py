"""Presence benchmark: enter rate, memory per member, SYNC time, and a kill -9 of an owner of members.

    python bench/presence.py --members 10000 --failover-members 4000

Part 1 (one frontend): ``--conns`` raw WebSocket connections (key auth, PRESENCE mode only) enter
``--members`` members with enterClient, ``--window`` un-ACKed PRESENCE frames in flight each;
``enter_per_s`` is members ACKed per second. ``rss_per_member_bytes`` is the frontend's RSS growth
divided by the members (it includes each enter's log entry, kept for the retention window). Then
``--syncs`` fresh connections attach: ``sync_ms`` is from the ATTACH sent to the last SYNC page
(empty cursor) received, and every one must carry all the members. Goal: SYNC of 10,000 < 1 s.

Part 2 (a 4-frontend, 2-zone cluster, one router; skipped with ``--failover-members 0``): ably-js
connections (``bench/presence_members.mjs``) enter ``--failover-members`` members through the
router (about a quarter on each frontend) and observers watch; the frontend owning the most member
connections is killed with SIGKILL; once every connection it owned is connected elsewhere under
its connectionId, the observers wait out the linger and report the presence events they saw since
the kill. Goal: 0 leave and 0 enter, and every observer's get() and a late attach list everyone.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import ensure_node_modules, machine, rss_kb  # noqa: E402
from kernel.protocol import Action, Flag, ProtocolMessage  # noqa: E402
from tests.interop._harness import Script, run_script  # noqa: E402
from tests.support import procs  # noqa: E402
from tests.support.cluster import run_cluster  # noqa: E402
from tests.support.procs import API_KEY  # noqa: E402
from tests.support.raw import RawClient, raw_connect  # noqa: E402

CHANNEL = "bench:presence"
SYNC_GOAL_MS = 1000.0
LINGER_MS = 3000


async def _enter_all(client: RawClient, prefix: str, count: int, window: int) -> None:
    """Enter ``count`` members on one connection, ``window`` PRESENCE frames un-ACKed at most."""
    await client.recv_action(Action.CONNECTED)
    await client.send(ProtocolMessage(action=Action.ATTACH, channel=CHANNEL, flags=int(Flag.PRESENCE)))
    await client.recv_action(Action.ATTACHED)
    acked = 0
    sent = 0
    while acked < count:
        while sent < count and sent - acked < window:
            member = {"action": 2, "clientId": f"{prefix}{sent}", "data": {"n": sent}}
            await client.send(
                ProtocolMessage(action=Action.PRESENCE, channel=CHANNEL, msg_serial=sent, presence=[member])
            )
            sent += 1
        pm = await client.recv_action(Action.ACK, Action.NACK)
        if pm.action is Action.NACK:
            raise RuntimeError(f"enter NACKed: {pm.error}")
        acked += pm.count or 1


async def _sync_once(url: str) -> tuple[float, int, int]:
    async with raw_connect(url, fmt="msgpack", key=API_KEY) as client:
        await client.recv_action(Action.CONNECTED)
        t0 = time.perf_counter()
        await client.send(ProtocolMessage(action=Action.ATTACH, channel=CHANNEL))
        attached = await client.recv_action(Action.ATTACHED)
        assert attached.has(Flag.HAS_PRESENCE), "ATTACHED without HAS_PRESENCE"
        members = pages = 0
        while True:
            pm = await client.recv_action(Action.SYNC)
            members += len(pm.presence or ())
            pages += 1
            if not (pm.channel_serial or ":").partition(":")[2]:
                return (time.perf_counter() - t0) * 1000, members, pages


async def standalone(workdir: Path, members: int, conns: int, window: int, syncs: int) -> dict[str, Any]:
    async with procs.run_frontend(workdir / "standalone", channel_log_max_messages=members * 2) as fe:
        pid = fe.process.pid
        rss0 = rss_kb(pid)
        per = members // conns
        t0 = time.perf_counter()
        finished = 0
        all_entered = trio.Event()
        async with trio.open_nursery() as nursery:
            for c in range(conns):

                async def one(c: int = c) -> None:
                    nonlocal finished
                    async with raw_connect(fe.url, fmt="msgpack", key=API_KEY) as client:
                        await _enter_all(client, f"c{c}-", per, window)
                        finished += 1
                        if finished == conns:
                            all_entered.set()
                        await trio.sleep_forever()  # stay connected: the members stay present

                nursery.start_soon(one)
            with trio.fail_after(600):
                await all_entered.wait()
            entered = per * conns
            elapsed = time.perf_counter() - t0
            rss1 = rss_kb(pid)
            times, counts, pages = [], [], []
            for _ in range(syncs):
                ms, got, n_pages = await _sync_once(fe.url)
                times.append(ms)
                counts.append(got)
                pages.append(n_pages)
            nursery.cancel_scope.cancel()
    return {
        "members": entered,
        "connections": conns,
        "enter_per_s": round(entered / elapsed),
        "enter_seconds": round(elapsed, 2),
        "rss_per_member_bytes": round((rss1 - rss0) * 1024 / entered),
        "sync_ms": {"median": round(statistics.median(times), 1), "max": round(max(times), 1)},
        "sync_pages": pages[0],
        "sync_members_all_complete": all(c == entered for c in counts),
        "sync_goal_ms": SYNC_GOAL_MS,
        "sync_goal_met": max(times) < SYNC_GOAL_MS,
    }


async def _command(script: Script, cmd: str, reply: str) -> dict[str, Any]:
    assert script.proc.stdin is not None
    await script.proc.stdin.send_all(json.dumps({"cmd": cmd}).encode() + b"\n")
    return await script.expect(reply)


async def failover(workdir: Path, total: int, clients: int, observers: int) -> dict[str, Any]:
    per_client = max(1, total // clients)
    async with run_cluster(workdir / "cluster", presence_linger_ms=LINGER_MS) as cluster:
        port = int(cluster.router_url().rsplit(":", 1)[1])
        config = {
            "port": port,
            "key": API_KEY,
            "channel": CHANNEL,
            "clients": clients,
            "perClient": per_client,
            "observers": observers,
        }
        argv = ["node", str(ROOT / "bench" / "presence_members.mjs")]
        async with run_script(workdir, argv, config, stdin=True) as script:
            with trio.fail_after(600):
                ready = await script.expect("ready")
            status = (await _command(script, "status", "status"))["clients"]
            per_node = Counter(c["serverId"].removeprefix("continuity.") for c in status)
            victim = max(sorted(per_node), key=lambda n: per_node[n])
            owned = {c["i"] for c in status if c["serverId"].removeprefix("continuity.") == victim}
            marked = await _command(script, "mark", "marked")
            watching = [o for o in marked["observers"] if not o["serverId"].endswith(victim)]
            t_kill = time.perf_counter()
            await cluster.kill(victim)
            back_s = None
            with trio.move_on_after(120):
                while True:
                    status = (await _command(script, "status", "status"))["clients"]
                    moved = [
                        c
                        for c in status
                        if c["i"] in owned
                        and c["state"] == "connected"
                        and c["id"] == c["first"]
                        and c["channel"] == "attached"
                        and not c["serverId"].endswith(victim)
                    ]
                    if len(moved) == len(owned):
                        back_s = time.perf_counter() - t_kill
                        break
                    await trio.sleep(0.5)
            # Wait out the linger (and the dead node's detection) before counting: a leave on the
            # dead owner's behalf would have been published by then.
            await trio.sleep(LINGER_MS / 1000 + 5)
            with trio.fail_after(120):
                report = await _command(script, "report", "report")
    changed = [c for c in status if c["id"] != c["first"]]
    obs = [o for o in report["observers"] if o["i"] in {w["i"] for w in watching}]
    spurious = Counter()
    for o in obs:
        spurious.update({k: v for k, v in o["counts"].items() if k in ("enter", "leave")})
    present = ready["total"]
    return {
        "members": present,
        "member_connections": clients,
        "victim": victim,
        "members_on_victim": len(owned) * per_client,
        "connections_on_victim": len(owned),
        "all_back_s": None if back_s is None else round(back_s, 2),
        "connection_id_changes": len(changed),
        "observers_on_other_frontends": len(obs),
        "spurious_leave": spurious.get("leave", 0),
        "spurious_enter": spurious.get("enter", 0),
        "observer_events_after_kill": [o["counts"] for o in obs],
        "observer_get_sizes": [o["members"] for o in obs],
        "late_attach_get": report["late"],
        "enter_ms_via_router": ready["enterMs"],
        "correct": (
            back_s is not None
            and not changed
            and not spurious
            and bool(obs)
            and all(o["members"] == present for o in obs)
            and report["late"]["members"] == present
        ),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="continuity-presence-") as tmp:
        workdir = Path(tmp)
        out: dict[str, Any] = {"bench": "presence", "machine": machine()}
        out["standalone"] = await standalone(workdir, args.members, args.conns, args.window, args.syncs)
        if args.failover_members:
            ensure_node_modules()
            out["failover"] = await failover(workdir, args.failover_members, args.clients, args.observers)
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=10_000, help="members entered on one channel (part 1)")
    p.add_argument("--conns", type=int, default=10, help="connections entering them (part 1)")
    p.add_argument("--window", type=int, default=200, help="un-ACKed PRESENCE frames per connection")
    p.add_argument("--syncs", type=int, default=5, help="fresh attaches timed (part 1)")
    p.add_argument("--failover-members", type=int, default=4000, help="members in part 2 (0 skips it)")
    p.add_argument("--clients", type=int, default=80, help="ably-js member connections (part 2)")
    p.add_argument("--observers", type=int, default=4, help="ably-js observers (part 2)")
    args = p.parse_args()
    print(json.dumps(trio.run(run, args), indent=2))


if __name__ == "__main__":
    main()
