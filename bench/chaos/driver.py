"""The chaos run's driver (``run.py``): applies the faults of the schedule to the cluster, the network
and the clients' tunnels on their planned times, records when each ran and which process was down or
cut off when, and waits after each cluster fault until the cluster has settled again.
"""

from __future__ import annotations

import signal
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import trio

from bench.chaos import schedule
from bench.chaos.config import CHANNELS, FIREHOSE, FRONTENDS, ROUTERS
from bench.chaos.load import ChaosClient
from bench.chaos.net import ChaosNet
from tests.support.cluster import LocalCluster
from tests.support.streams import wait_until_async

SETTLE_TIMEOUT_S = 60.0
CLUSTER_GET_TIMEOUT_S = 2.0  # one /cluster answer; the settle asks again until SETTLE_TIMEOUT_S


class Driver:
    """Applies the faults to the cluster, the network and the clients' tunnels, and records when."""

    def __init__(
        self, cluster: LocalCluster, net: ChaosNet | None, clients: dict[str, ChaosClient], t0: float
    ) -> None:
        self.cluster = cluster
        self.net = net
        self.clients = clients
        self.t0 = t0
        self.applied: list[dict[str, Any]] = []
        self.anomalies: list[dict[str, Any]] = []
        self.unsettled = ""  # what the last settle check found unsettled
        self.down: list[dict[str, Any]] = []  # {"node", "from", "to"}: a process not running
        self.separations: list[dict[str, Any]] = []  # {"from", "to", "side"}: a partition
        self.locks: defaultdict[str, trio.Lock] = defaultdict(trio.Lock)  # one per daemon (_down_for)

    async def _down_for(self, names: Sequence[str], seconds: float) -> None:
        """Kill ``names`` together, keep them down ``seconds``, start them again. A process that another
        group's fault holds down (a router_kill and a router kill while settling) is waited for, so
        that one fault never kills a process another is restarting."""
        locks = [self.locks[n] for n in sorted(names)]
        for lock in locks:
            await lock.acquire()
        try:
            await self._kill(names)
            await trio.sleep(seconds)  # the planned downtime
            await self._start(names)
        finally:
            for lock in reversed(locks):
                lock.release()

    async def _kill(self, names: Sequence[str], sig: int = signal.SIGKILL) -> list[int]:
        """Stop ``names`` together (kill -9 by default); their down-time starts now."""
        recs = [{"node": n, "from": self.now(), "to": None} for n in names]
        self.down.extend(recs)
        codes: list[int] = []
        async with trio.open_nursery() as n:
            for name in names:
                n.start_soon(self._stop_one, name, sig, codes)
        return codes

    async def _stop_one(self, name: str, sig: int, codes: list[int]) -> None:
        codes.append(await self.cluster.stop(name, sig))

    async def _start(self, names: Sequence[str]) -> None:
        async with trio.open_nursery() as n:
            for name in names:
                n.start_soon(self.cluster.start, name)
        for rec in self.down:
            if rec["node"] in names and rec["to"] is None:
                rec["to"] = self.now()

    def now(self) -> float:
        return round(trio.current_time() - self.t0, 3)

    async def run_group(self, faults: Sequence[schedule.Fault]) -> None:
        for f in faults:
            await trio.sleep_until(self.t0 + f.at)  # scheduling the fault, not waiting for a condition
            await self.apply(f)

    async def apply(self, f: schedule.Fault) -> None:
        rec: dict[str, Any] = {**f.as_json(), "started": self.now(), "ended": None}
        self.applied.append(rec)
        match f.kind:
            case "fe_kill" | "router_kill":
                await self._down_for([f.target], f.duration)
            case "zone_loss":
                zone = [name for name, z in FRONTENDS if z == f.target]
                rec["killed"] = zone
                await self._down_for(zone, f.duration)
            case "fe_drain":
                # Down from the SIGTERM's answer: the drain hands its homes over before it exits.
                rc = await self.cluster.stop(f.target, signal.SIGTERM)
                self.down.append({"node": f.target, "from": self.now(), "to": None})
                rec["exit_code"] = rc
                if rc != 0:
                    self.anomalies.append({"fault": f.index, "what": f"drain of {f.target} exited {rc}"})
                await trio.sleep(f.duration)
                await self._start([f.target])
            case "partition_fe" | "partition_zone":
                assert self.net is not None
                host = self.net.lone if f.kind == "partition_fe" else self.net.zone
                side = ["fe-b2"] if f.kind == "partition_fe" else [n for n, z in FRONTENDS if z == "a"]
                cut = {"from": self.now(), "to": None, "side": side}
                self.separations.append(cut)
                host.cut()
                try:
                    await trio.sleep(f.duration)
                finally:
                    host.heal()
                    cut["to"] = self.now()
            case "tunnel_cut":
                self.clients[f.target].tunnel.cut(f.duration)
                await trio.sleep(f.duration)
            case "slow_consumer":
                tunnel = self.clients[f.target].tunnel
                tunnel.hold()
                try:
                    rec["burst_messages"] = await self.clients["burst"].burst(
                        FIREHOSE, self.now() + f.duration
                    )
                finally:
                    tunnel.release()
        if f.router is not None:
            # The router pattern: the routers go while the cluster settles from this fault.
            routers = [name for name, _ in ROUTERS] if f.router == "both" else [f.router]
            rec["router_killed_at"] = self.now()
            await self._down_for(routers, f.router_down)
        rec["ended"] = self.now()
        if f.group == "cluster":
            rec["settle_s"] = await self.settle(f.index)

    async def settle(self, index: int | None) -> float | None:
        """Wait until every running daemon sees every other alive, each channel in use has one home
        and a replica in the other zone, and no frontend keeps its zone's place at the witness (a
        zone that committed alone has told the witness its entries are held across zones again):
        until then the cluster is still recovering, and losing that zone is a second fault inside
        the first one's recovery. Returns the seconds it took (None: it never did)."""
        start = trio.current_time()
        self.unsettled = "the map did not converge"
        try:
            await self.cluster.wait_converged(within=SETTLE_TIMEOUT_S)
            self.unsettled = "no look at every frontend's /cluster finished"
            with trio.fail_after(SETTLE_TIMEOUT_S):
                await wait_until_async(self._placed)
        except trio.TooSlowError:
            what = {"what": "the cluster did not settle", "at": self.now(), "why": self.unsettled}
            self.anomalies.append({"fault": index, **what})
            return None
        return round(trio.current_time() - start, 2)

    async def _placed(self) -> bool:
        """One look at every frontend's /cluster; ``self.unsettled`` says why the last whole look
        failed (set only once a look ends, so a settle cancelled mid-look reports a finished one)."""
        why = await self._placement_problem()
        if why is not None:
            self.unsettled = why
        return why is None

    async def _placement_problem(self) -> str | None:
        homes: dict[str, list[str]] = defaultdict(list)
        replicas: dict[str, list[str]] = defaultdict(list)
        for fe in self.cluster.frontends:
            if not fe.running:
                return f"{fe.name} is not running"
            view = None
            with trio.move_on_after(CLUSTER_GET_TIMEOUT_S):  # a stalled daemon must not hang the settle
                try:
                    view = await fe.get_json("/cluster")
                except (OSError, AssertionError, ValueError, trio.BrokenResourceError) as exc:
                    return f"{fe.name} /cluster failed: {exc!r}"[:300]
            if view is None:
                return f"{fe.name} did not answer /cluster within {CLUSTER_GET_TIMEOUT_S} s"
            if view.get("write", {}).get("witness_place"):
                return f"{fe.name} keeps its zone's place at the witness"
            for ch in view["channels"]["home"]:
                homes[ch].append(fe.zone)
            for ch in view["channels"]["replica"]:
                replicas[ch].append(fe.zone)
        in_use = [ch for ch in (*CHANNELS, FIREHOSE) if ch in homes or ch in replicas]
        bad = [ch for ch in in_use if len(homes[ch]) != 1 or not any(z != homes[ch][0] for z in replicas[ch])]
        return f"not placed: {[(ch, homes[ch], replicas[ch]) for ch in bad]}" if bad else None
