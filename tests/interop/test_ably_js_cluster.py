"""Failover with the real npm ``ably`` client through the router of a real cluster.

Six ably-js subscribers (half msgpack, half JSON, one Node process) connect
through the router of a 4-frontend, 2-zone cluster; the trio SDK publishes
numbered messages. The frontend that holds the most ably-js subscribers is
killed with SIGKILL (``owner``), or the channel's home is (``home``: the
replica continues the same epoch). Each subscriber on the killed node must
resume elsewhere under the same connectionId, its channel must come back
``attached`` with ``resumed: true`` (and never report a ``resumed: false``
attach or update), the other subscribers must see nothing at all, and every
ACKed message must reach every subscriber exactly once, in serial order, in
one epoch.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.integration.cluster.streams import Publisher, Subscriber, check_exactly_once
from tests.interop._harness import Script, node_script
from tests.support.cluster import LocalCluster, run_cluster
from tests.support.procs import API_KEY
from tests.support.streams import parse_serial, wait_until

pytestmark = pytest.mark.interop

CHANNEL = "interop:failover"
# useBinaryProtocol per subscriber: both formats. The router spreads new
# connections over the 4 frontends, so subscribers i and i+4 tend to share one:
# give them different formats.
FORMATS = [True, False, True, False, False, True]


@dataclass
class JsSub:
    """One ably-js subscriber, as reported by failover.mjs."""

    i: int
    binary: bool
    conn: list[dict[str, Any]] = field(default_factory=list)
    chan: list[dict[str, Any]] = field(default_factory=list)
    stream: Subscriber = field(default_factory=lambda: Subscriber(CHANNEL))
    server: str | None = None
    mark: tuple[int, int] = (0, 0)  # len(conn), len(chan) at the kill

    @property
    def fmt(self) -> str:
        return "msgpack" if self.binary else "json"

    def after_kill(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return self.conn[self.mark[0] :], self.chan[self.mark[1] :]

    def back(self, victim: str) -> bool:
        """Connected again on another frontend and the channel attached again after the kill."""
        conn, chan = self.after_kill()
        return (
            any(e["current"] == "connected" for e in conn)
            and conn[-1]["current"] == "connected"
            and self.server not in (None, victim)
            and any(e["current"] == "attaching" for e in chan)
            and chan[-1]["current"] == "attached"
        )


def server_name(server_id: str | None) -> str | None:
    return server_id.removeprefix("continuity.") if server_id else None


async def pump(script: Script, subs: dict[int, JsSub], ready: trio.Event) -> None:
    """Route the script's JSON lines into ``subs`` until it is killed."""
    while True:
        ev = await script.next_event()
        kind = ev.get("event")
        if kind == "msg":
            assert ev["serial"] is not None, f"message without a serial: {ev}"
            subs[ev["i"]].stream.got.append((ev["n"], ev["serial"]))
        elif kind == "conn":
            sub = subs[ev["i"]]
            sub.conn.append(ev)
            if ev["current"] == "connected":
                sub.server = server_name(ev["serverId"])
        elif kind == "chan":
            subs[ev["i"]].chan.append(ev)
        elif kind == "ready":
            for s in ev["subs"]:
                sub = subs[s["i"]]
                sub.stream.first_id = s["id"]
                sub.stream.attached_serial = s["attachSerial"]
                sub.server = server_name(s["serverId"])
            ready.set()


def describe(subs: dict[int, JsSub]) -> str:
    lines = []
    for s in subs.values():
        lines.append(f"sub {s.i} ({s.fmt}) id={s.stream.first_id} on {s.server} got={len(s.stream.got)}")
        lines.extend(f"    conn {e}" for e in s.conn)
        lines.extend(f"    chan {e}" for e in s.chan)
    return "\n".join(lines)


async def home_of(cluster: LocalCluster, channel: str) -> str:
    for fe in cluster.frontends:
        if fe.running and channel in (await fe.get_json("/cluster"))["channels"]["home"]:
            return fe.name
    raise AssertionError(f"no running frontend is home of {channel}")


@pytest.mark.parametrize("target", ["owner", "home"])
async def test_kill_9_with_ably_js_subscribers(tmp_path: Path, target: str) -> None:
    """``owner``: kill the frontend holding the most subscribers; ``home``: the channel's home."""
    subs = {i: JsSub(i, binary) for i, binary in enumerate(FORMATS)}
    pub = Publisher(CHANNEL)
    with trio.fail_after(45):
        async with run_cluster(tmp_path / "cluster") as cluster:
            port = int(cluster.router_url().rsplit(":", 1)[1])
            config = {"port": port, "key": API_KEY, "channel": CHANNEL, "subs": FORMATS, "timeoutMs": 60000}
            script_cm = node_script(tmp_path, "failover.mjs", config)
            async with script_cm as script, trio.open_nursery() as nursery:
                ready = trio.Event()
                nursery.start_soon(pump, script, subs, ready)
                with trio.fail_after(10):
                    await ready.wait()
                await nursery.start(
                    lambda task_status: pub.run(cluster.router_url(), rate=100, task_status=task_status)
                )
                with trio.fail_after(10):
                    await wait_until(lambda: len(pub.acked) >= 30)

                per_node = collections.Counter(s.server for s in subs.values() if s.server)
                assert sum(per_node.values()) == len(subs), describe(subs)
                home = await home_of(cluster, CHANNEL)
                if target == "owner":
                    # The node with the most subscribers, preferring one that holds both formats.
                    formats = {n: {s.binary for s in subs.values() if s.server == n} for n in per_node}
                    victim = max(sorted(per_node), key=lambda n: (per_node[n], len(formats[n])))
                else:
                    victim = home
                epoch = parse_serial(pub.acked[-1][1])[0]
                victims = [s for s in subs.values() if s.server == victim]
                for s in subs.values():
                    s.mark = (len(s.conn), len(s.chan))
                await cluster.kill(victim)
                try:
                    with trio.fail_after(15):
                        await wait_until(lambda: all(s.back(victim) for s in victims))
                except trio.TooSlowError:
                    raise AssertionError(f"victim={victim} not back:\n{describe(subs)}") from None

                goal = len(pub.acked) + 50
                with trio.fail_after(15):
                    await wait_until(lambda: len(pub.acked) >= goal)
                pub.stop.set()
                with trio.fail_after(15):
                    await pub.finished.wait()  # its last publish is answered: acked is final
                last = pub.acked[-1][1]
                try:
                    with trio.fail_after(10):
                        await wait_until(lambda: all(s.stream.caught_up(last) for s in subs.values()))
                except trio.TooSlowError:
                    raise AssertionError(f"not caught up to {last}:\n{describe(subs)}") from None
                nursery.cancel_scope.cancel()

    print(f"{target}: victim={victim} home={home} per_node={dict(per_node)}")
    print(f"acked={len(pub.acked)} failed={pub.failed}")
    print(describe({s.i: s for s in victims}))
    context = f"victim={victim}\n{describe(subs)}"
    assert victims or target == "home", context
    for s in subs.values():
        ids = {e["id"] for e in s.conn if e["current"] == "connected"}
        assert ids == {s.stream.first_id}, f"sub {s.i}: connectionId changed: {ids}\n{context}"
        conn, chan = s.after_kill()
        if s not in victims:
            # Not on the killed node: it sees nothing of the failover.
            assert not conn and not chan, f"sub {s.i} on {s.server} was disturbed\n{context}"
            continue
        assert s.server != victim
        # RTN15c6: disconnected, then connected on the same connectionId and without an error.
        states = [e["current"] for e in conn]
        assert states[0] == "disconnected" and states[-1] == "connected", context
        assert not [e for e in conn if e["current"] in ("suspended", "failed", "closed")], context
        assert all(e["reason"] is None for e in conn if e["current"] == "connected"), context
        assert not [e for e in conn if e["change"] == "update"], context
        # RTL3d + RTN15c6: attached -> attaching -> attached(resumed), never an update (RTL12).
        assert [e["current"] for e in chan] == ["attaching", "attached"], context
        assert all(e["resumed"] and e["reason"] is None for e in chan if e["current"] == "attached"), context
        assert not [e for e in chan if e["change"] == "update"], context
    # Exactly once, in order, one epoch, for every ACKed publish after each attach.
    check_exactly_once(pub, [s.stream for s in subs.values()])
    epochs = {parse_serial(serial)[0] for s in subs.values() for _, serial in s.stream.got}
    assert epochs == {epoch}, f"the epoch changed: {epoch} -> {epochs}"
    assert len(pub.acked) >= 80 and all(len(s.stream.got) >= 80 for s in subs.values()), context
