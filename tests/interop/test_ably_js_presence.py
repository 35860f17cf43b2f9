"""Presence with the real npm ``ably`` under Node: one process per client (js/presence.mjs).

Standalone: enter, update, leave, enterClient, data of every kind in both formats, get() and
the 40160 refusal. Cluster (4 frontends, 2 zones, 2 routers): members and observers on
different frontends through both routers; kill -9 of a member's frontend is invisible to the
observers (no leave, no enter; get() still lists the member); a member whose process dies
(no resume) leaves exactly once after the linger; a Comet member.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.interop._harness import API_KEY, Script, make_jwt, node_script, run_frontend
from tests.support.cluster import LocalCluster, run_cluster
from tests.support.procs import API_KEY as CLUSTER_KEY

pytestmark = pytest.mark.interop

CHANNEL = "interop:presence"
LINGER_MS = 2000
_tags = itertools.count()


class Agent:
    """One ably-js client process: its events, and commands answered ``ok``/``failed``."""

    def __init__(self, name: str, script: Script) -> None:
        self.name = name
        self.script = script
        self.events: list[dict[str, Any]] = []
        self._changed = trio.Event()
        self.ready: dict[str, Any] = {}
        self.killed = False

    async def pump(self) -> None:
        while True:
            try:
                ev = await self.script.next_event()
            except AssertionError:
                if self.killed:
                    return
                raise
            self.events.append(ev)
            if ev.get("event") == "ready":
                self.ready = ev
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(self, pred: Callable[[dict[str, Any]], bool], what: str, within: float = 10) -> dict:
        try:
            with trio.fail_after(within):
                while True:
                    for ev in self.events:
                        if pred(ev):
                            return ev
                    await self._changed.wait()
        except trio.TooSlowError:
            raise AssertionError(
                f"{self.name}: timed out waiting for {what}; events: {self.events}"
            ) from None

    async def do(self, cmd: str, **fields: Any) -> Any:
        tag = next(_tags)
        await self.script.command({"cmd": cmd, "tag": tag, **fields})
        ev = await self.wait_for(lambda e: e.get("tag") == tag and e["event"] in ("ok", "failed"), cmd)
        if ev["event"] == "failed":
            raise CommandFailed(ev["error"])
        return ev.get("result")

    @property
    def id(self) -> str:
        return str(self.ready["id"])

    @property
    def server(self) -> str:
        return str(self.ready["serverId"]).removeprefix("continuity.")

    def presence(self, since: int = 0) -> list[tuple[str, str | None]]:
        return [(e["action"], e["clientId"]) for e in self.events[since:] if e["event"] == "presence"]

    def kill(self) -> None:
        self.killed = True
        self.script.kill()


class CommandFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(str(error))
        self.error = error


@asynccontextmanager
async def agents(tmp: Path) -> AsyncIterator[Callable[..., Any]]:
    """Yield ``start(name, port, **config)`` which runs presence.mjs and waits for ``ready``."""
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:

        async def start(name: str, port: int, **config: Any) -> Agent:
            cfg = {"port": port, "key": API_KEY, "channel": CHANNEL, "binary": False, "timeoutMs": 120_000}
            script = await stack.enter_async_context(
                node_script(tmp, "presence.mjs", {**cfg, **config}, stdin=True)
            )
            agent = Agent(name, script)
            nursery.start_soon(agent.pump)
            await agent.wait_for(lambda e: e["event"] == "ready", f"{name} ready", within=15)
            return agent

        try:
            yield start
        finally:
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("binary", [True, False], ids=["msgpack", "json"])
async def test_enter_update_leave_get_and_enter_client(tmp_path: Path, binary: bool) -> None:
    with trio.fail_after(40):
        async with run_frontend(tmp_path) as fe, agents(tmp_path) as start:
            alice = await start("alice", fe.port, clientId="alice", binary=binary)
            watcher = await start("watcher", fe.port, binary=not binary)  # no clientId: enterClient
            await alice.do("enter", data={"mood": "happy", "n": [1, 2]})
            await watcher.wait_for(lambda e: e.get("action") == "enter", "enter seen")
            await alice.do("update", data="plain text")
            await watcher.do("enterClient", clientId="bot", data="beep")
            members = await watcher.do("get")
            assert sorted((m["clientId"], m["data"], m["action"]) for m in members) == [
                ("alice", "plain text", "present"),
                ("bot", "beep", "present"),
            ]
            alice_member = next(m for m in members if m["clientId"] == "alice")
            assert alice_member["connectionId"] == alice.id
            assert alice_member["id"].startswith(f"{alice.id}:") and isinstance(
                alice_member["timestamp"], int
            )
            late = await start("late", fe.port, binary=binary)
            assert len(await late.do("get")) == 2  # SYNC on attach
            rest = await watcher.do("restGet", limit=1)  # GET /channels/{id}/presence, paged
            assert rest["pages"] == 2
            assert sorted((m["clientId"], m["data"], m["action"]) for m in rest["members"]) == [
                ("alice", "plain text", "present"),
                ("bot", "beep", "present"),
            ]
            await alice.do("leave")
            await watcher.do("leaveClient", clientId="bot")
            await late.wait_for(lambda e: e.get("action") == "leave" and e["clientId"] == "bot", "bot left")
            assert await late.do("get") == []
            assert watcher.presence() == [
                ("enter", "alice"),
                ("update", "alice"),
                ("enter", "bot"),
                ("leave", "alice"),
                ("leave", "bot"),
            ]
            # The SYNC on attach shows as "present" events (RTP2), then the live leaves.
            assert late.presence() == [
                ("present", "alice"),
                ("present", "bot"),
                ("leave", "alice"),
                ("leave", "bot"),
            ]


async def test_presence_without_capability_is_refused_40160(tmp_path: Path) -> None:
    token = make_jwt(client_id="eve", capability={"interop:*": ["publish", "subscribe"]})
    with trio.fail_after(30):
        async with run_frontend(tmp_path) as fe, agents(tmp_path) as start:
            eve = await start("eve", fe.port, token=token)
            with pytest.raises(CommandFailed) as info:
                await eve.do("enter", data="x")
            assert info.value.error["code"] == 40160


async def _on_different_frontends(start: Callable[..., Any], cluster: LocalCluster) -> tuple[Agent, Agent]:
    """A member through router 1 and an observer through router 2, on different frontends."""
    member = await start("member", _port(cluster, 0), key=CLUSTER_KEY, clientId="member")
    for i in range(6):
        observer = await start(
            f"observer{i}", _port(cluster, 1), key=CLUSTER_KEY, clientId=f"observer{i}", binary=i % 2 == 0
        )
        if observer.server != member.server:
            return member, observer
    raise AssertionError("the routers put every client on the member's frontend")


def _port(cluster: LocalCluster, router: int) -> int:
    return int(cluster.router_url(router).rsplit(":", 1)[1])


@asynccontextmanager
async def presence_cluster(tmp: Path, **overrides: Any) -> AsyncIterator[LocalCluster]:
    routers = (("rt1", "a"), ("rt2", "b"))
    async with run_cluster(
        tmp / "cluster", routers=routers, presence_linger_ms=LINGER_MS, **overrides
    ) as cluster:
        yield cluster


async def test_cluster_enter_get_subscribe_leave_across_frontends_and_routers(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with presence_cluster(tmp_path) as cluster, agents(tmp_path) as start:
            member, observer = await _on_different_frontends(start, cluster)
            await member.do("enter", data="hello")
            await observer.wait_for(lambda e: e.get("action") == "enter", "enter across frontends")
            [m] = await observer.do("get")
            assert (m["clientId"], m["connectionId"], m["data"]) == ("member", member.id, "hello")
            await observer.do("enter", data="me too")
            await member.wait_for(lambda e: e.get("clientId") == observer.name, "observer's enter")
            assert sorted(m["clientId"] for m in await member.do("get")) == ["member", observer.name]
            await member.do("leave")
            await observer.wait_for(lambda e: e.get("action") == "leave", "leave across frontends")
            assert [m["clientId"] for m in await observer.do("get")] == [observer.name]
            assert observer.presence() == [("enter", "member"), ("enter", observer.name), ("leave", "member")]


@pytest.mark.parametrize(
    ("transport", "how"), [("web_socket", "kill"), ("comet", "kill"), ("web_socket", "drain")]
)
async def test_kill_9_or_drain_of_the_members_frontend_is_invisible(
    tmp_path: Path, transport: str, how: str
) -> None:
    """The member's frontend dies (SIGKILL) or drains (SIGTERM): the member resumes elsewhere under
    the same connectionId, and observers on other frontends see no leave and no enter."""
    with trio.fail_after(90):
        async with presence_cluster(tmp_path) as cluster, agents(tmp_path) as start:
            member = await start(
                "member", _port(cluster, 0), key=CLUSTER_KEY, clientId="member", transports=[transport]
            )
            observers = []
            for i in range(6):
                ob = await start(
                    f"observer{i}", _port(cluster, i % 2), key=CLUSTER_KEY, clientId=f"observer{i}"
                )
                if ob.server != member.server:
                    observers.append(ob)
                if len(observers) == 2:
                    break
            assert observers, "no observer on another frontend"
            await member.do("enter", data="staying")
            for ob in observers:
                await ob.wait_for(lambda e: e.get("action") == "enter", "enter seen")
            marks = [len(ob.events) for ob in observers]
            victim = member.server
            if how == "kill":
                await cluster.kill(victim)
            else:
                await cluster.stop(victim, signal.SIGTERM)
            back = await member.wait_for(
                lambda e: (
                    e["event"] == "conn"
                    and e["current"] == "connected"
                    and e["serverId"] is not None
                    and not e["serverId"].endswith(victim)
                ),
                "member back on another frontend",
                within=30,
            )
            assert back["id"] == member.id, f"connectionId changed: {back}"
            # An observation window longer than the linger (a leave on the dead owner's behalf would
            # have been sent by now), closed by an update from the member: the log delivers in order,
            # so once observers have the update they have everything published before it.
            await trio.sleep((LINGER_MS + 2500) / 1000)
            await member.do("update", data="still here")
            for ob, mark in zip(observers, marks, strict=True):
                await ob.wait_for(lambda e: e.get("action") == "update", "the closing update")
                assert ob.presence(mark) == [("update", "member")], f"{ob.name} saw {ob.presence(mark)}"
                [m] = [m for m in await ob.do("get") if m["clientId"] == "member"]
                assert m["connectionId"] == member.id and m["data"] == "still here"
            late = await start("late", _port(cluster, 1), key=CLUSTER_KEY)
            assert "member" in [m["clientId"] for m in await late.do("get")]
            await member.do("leave")
            for ob in observers:
                await ob.wait_for(lambda e: e.get("action") == "leave", "leave after failover")


async def test_member_and_its_frontend_both_die_the_copy_holder_leaves_once(tmp_path: Path) -> None:
    """Nobody will resume the connection and its owner is dead: the frontend holding the
    connection's copy leaves its member, once, the linger after it sees the owner dead (as Ably's
    15 s after a connection is lost), long before the copy would expire (TTL 60 s here)."""
    with trio.fail_after(60):
        async with (
            presence_cluster(tmp_path, connection_state_ttl_ms=60_000) as cluster,
            agents(tmp_path) as start,
        ):
            member, observer = await _on_different_frontends(start, cluster)
            await member.do("enter", data="gone")
            await observer.wait_for(lambda e: e.get("action") == "enter", "enter seen")
            mark = len(observer.events)
            member.kill()
            killed_at = trio.current_time()
            await cluster.kill(member.server)
            leave = await observer.wait_for(
                lambda e: e.get("action") == "leave", "leave by the copy holder", within=30
            )
            # After the linger, and well before the TTL: failure detection plus the linger.
            assert LINGER_MS / 1000 - 0.2 <= trio.current_time() - killed_at < 30
            assert leave["connectionId"] == member.id and leave["data"] == "gone"
            # Observation window for a second leave, closed by the observer's own enter (in log order).
            await trio.sleep(2 * LINGER_MS / 1000)
            await observer.do("enter")
            await observer.wait_for(
                lambda e: e.get("action") == "enter" and e["clientId"] == observer.name, "own"
            )
            assert observer.presence(mark) == [("leave", "member"), ("enter", observer.name)]
            assert [m["clientId"] for m in await observer.do("get")] == [observer.name]


async def test_abrupt_drop_leaves_once_after_the_linger(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with presence_cluster(tmp_path) as cluster, agents(tmp_path) as start:
            member, observer = await _on_different_frontends(start, cluster)
            await member.do("enter", data="bye")
            await observer.wait_for(lambda e: e.get("action") == "enter", "enter seen")
            mark = len(observer.events)
            killed_at = trio.current_time()
            member.kill()  # its process dies: the transport drops and it never resumes
            await observer.wait_for(lambda e: e.get("action") == "leave", "leave after the linger", within=20)
            assert trio.current_time() - killed_at >= LINGER_MS / 1000 - 0.2
            # Observation window for a second leave, closed by the observer's own enter (in log order).
            await trio.sleep(2 * LINGER_MS / 1000)
            await observer.do("enter")
            await observer.wait_for(
                lambda e: e.get("action") == "enter" and e["clientId"] == observer.name, "own"
            )
            assert observer.presence(mark) == [("leave", "member"), ("enter", observer.name)]
            assert [m["clientId"] for m in await observer.do("get")] == [observer.name]


async def test_a_member_back_on_a_new_connection_before_the_copy_holders_leave_stays(tmp_path: Path) -> None:
    """The member's process and its frontend die; the user comes back at once on a new connection
    (same clientId, another frontend) and enters again, before the copy holder leaves the old
    connection's member: only that one leaves, and every observer ends with the new one."""
    with trio.fail_after(75):
        async with (
            presence_cluster(tmp_path, connection_state_ttl_ms=60_000) as cluster,
            agents(tmp_path) as start,
        ):
            member, observer = await _on_different_frontends(start, cluster)
            back = None
            for i in range(6):
                again = await start(
                    f"back{i}", _port(cluster, i % 2), key=CLUSTER_KEY, clientId="member", binary=i % 2 == 0
                )
                if again.server != member.server:
                    back = again
                    break
            assert back is not None, "the routers put every client on the member's frontend"
            await member.do("enter", data="old")
            await observer.wait_for(lambda e: e.get("action") == "enter", "enter seen")
            mark = len(observer.events)
            member.kill()
            await cluster.kill(member.server)
            await back.do("enter", data="new")  # before the copy holder's leave (detection + linger)
            leave = await observer.wait_for(
                lambda e: e.get("action") == "leave", "leave by the copy holder", within=30
            )
            assert leave["connectionId"] == member.id and leave["data"] == "old"
            # Observation window for a second leave, closed by the observer's own enter (in log order).
            await trio.sleep(2 * LINGER_MS / 1000)
            await observer.do("enter")
            await observer.wait_for(
                lambda e: e.get("action") == "enter" and e["clientId"] == observer.name, "own"
            )
            want = [("enter", "member"), ("leave", "member"), ("enter", observer.name)]
            assert observer.presence(mark) == want
            enters = [e for e in observer.events[mark:] if e.get("action") == "enter"]
            assert [e["connectionId"] for e in enters] == [back.id, observer.id]
            members = {m["clientId"]: m for m in await observer.do("get")}
            assert sorted(members) == sorted(["member", observer.name])
            assert members["member"]["connectionId"] == back.id and members["member"]["data"] == "new"
            late = await start("late", _port(cluster, 1), key=CLUSTER_KEY)
            assert sorted((m["clientId"], m["connectionId"]) for m in await late.do("get")) == sorted(
                [("member", back.id), (observer.name, observer.id)]
            )
