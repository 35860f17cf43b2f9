"""The frontend's half of the zone quorum's grants: ask the witness routers (trio driver).

``ChannelService.witness_request`` (``home_quorum.py``, pure) says whom to ask and what; this loop
asks every witness router concurrently, one request per router at a time, with ``POST /witness``
(``kernel/quorum.py`` signs it),
feeds each answer to ``ChannelService.grant``, and runs again whenever the cluster map changes and
every ``RENEW_MS`` while a grant is needed or held. A router that does not answer in time simply
gives no grant: the lease that is held lapses by itself.
"""

from __future__ import annotations

import json
from typing import Any

import h11
import structlog
import trio

from frontend.clock import wall_ms
from frontend.home_quorum import RENEW_MS
from frontend.node import FrontendNode
from kernel.quorum import MAC_HEADER, WITNESS_PATH, grant_request

log = structlog.get_logger("continuity.cluster")

ASK_TIMEOUT_S = 1.0
IDLE_CHECK_S = 0.5  # with nothing to ask, look again this often (a lease lapsing, a home degrading)
MAX_ANSWER_BYTES = 4096


async def post_json(address: str, body: bytes, headers: list[tuple[str, str]], timeout_s: float) -> Any:
    """One HTTP/1.1 POST of ``body`` to ``address`` (host:port); the decoded JSON answer, or None."""
    host, _, port = address.rpartition(":")
    with trio.move_on_after(timeout_s):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            head = [("host", address), ("content-type", "application/json"),
                    ("content-length", str(len(body))), ("connection", "close"), *headers]  # fmt: skip
            request = h11.Request(method="POST", target=WITNESS_PATH, headers=head)
            await stream.send_all(conn.send(request) or b"")
            await stream.send_all(conn.send(h11.Data(data=body)) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
            status, data = 0, b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    chunk = await stream.receive_some(MAX_ANSWER_BYTES)
                    if not chunk:
                        return None
                    conn.receive_data(chunk)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    data += event.data
                    if len(data) > MAX_ANSWER_BYTES:
                        return None
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
            return json.loads(data) if status == 200 else None
    return None


class WitnessClient:
    def __init__(self, node: FrontendNode, secret: str) -> None:
        self.node = node
        self.secret = secret
        self.changed = trio.Event()
        # One request per router at a time, so that it answers them in the order they were sent and
        # we apply its answers in the order it decided them. Chaos seed 28473 (t 94.4-111.9 s):
        # fe-a1's ask for a grant (zone b out of sight) and, on the next map change, its release
        # were in flight together; the witness decided the release first (nothing to release) and
        # the grant second, the answers came back the other way round, and fe-a1 applied the
        # release last: it believed it held nothing while the witness kept zone a's place for it.
        # Zone a was then lost, zone b was refused a grant until fe-a1 restarted, and that restart
        # was taken for the loss of zone a's data: 102 discontinuity_within_ttl.
        self.in_flight: set[str] = set()
        self.settled = trio.Event()  # a request in flight was answered (or gave up)

    def poke(self) -> None:
        """The cluster map changed: look again now."""
        self.changed.set()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                channels = self.node.channels
                ask = channels.witness_request(wall_ms())
                if ask is not None:
                    routers, need, holding, alone = ask
                    for router in routers:
                        if router not in self.in_flight:  # else asked again on the next round
                            self.in_flight.add(router)
                            nursery.start_soon(self._ask, router, need, holding, alone)
                with trio.move_on_after(RENEW_MS / 1000 if ask is not None else IDLE_CHECK_S):
                    await self.changed.wait()
                self.changed = trio.Event()

    async def leave(self) -> None:
        """A drain is done (``QuorumHomes.leave``): tell every witness router now, and wait for the
        answers (bounded), before the process leaves the map; a release sent after it would never
        come, and the witness would take our next process for a holder restart (issue 18)."""
        with trio.move_on_after(2 * ASK_TIMEOUT_S + 0.5):
            while self.in_flight:  # one request per router at a time: let the last one answer
                self.settled = trio.Event()
                await self.settled.wait()
            ask = self.node.channels.witness_request(wall_ms())
            if ask is None:
                return
            routers, need, holding, alone = ask
            async with trio.open_nursery() as nursery:
                for router in routers:
                    self.in_flight.add(router)
                    nursery.start_soon(self._ask, router, need, holding, alone)

    async def _ask(self, router: str, need: bool, holding: bool, alone: bool) -> None:
        try:
            await self._ask_once(router, need, holding, alone)
        finally:
            self.in_flight.discard(router)
            self.settled.set()

    async def _ask_once(self, router: str, need: bool, holding: bool, alone: bool) -> None:
        channels = self.node.channels
        peer = channels.view.peers.get(router)
        if peer is None or not peer.client_addr:
            return
        cfg = self.node.config
        sent = wall_ms()
        body, mac = grant_request(
            self.secret, cfg.node_id, cfg.zone, need=need, holding=holding, alone=alone, boot=channels.boot,
            now_ms=sent,
        )
        try:
            answer = await post_json(peer.client_addr, body, [(MAC_HEADER, mac)], ASK_TIMEOUT_S)
        except (OSError, trio.BrokenResourceError, h11.ProtocolError, ValueError) as exc:
            # BrokenResourceError: the router reset the connection (killed mid-request); it is not an
            # OSError, and escaping here it ended the frontend (test_zone_loss.py, rt-w SIGKILLed).
            log.info("zone.witness_unreachable", router=router, reason=str(exc))
            channels.witness_unanswered(need)
            return
        if not isinstance(answer, dict):
            log.info("zone.witness_no_answer", router=router)
            channels.witness_unanswered(need)
            return
        holder = answer.get("holder")
        holder = holder if isinstance(holder, str) else None
        granted, lost = bool(answer.get("granted")), bool(answer.get("lost"))
        age = answer.get("lost_age_ms")
        age = age if isinstance(age, int) and not isinstance(age, bool) and age >= 0 else 0
        channels.grant(wall_ms(), router, sent, granted, need, holder, lost=lost, lost_age_ms=age)
        self.node.wake()
