"""Presence: the node-facing half of presence (RTP), riding the channel log and connection state.

Theory of operation
-------------------
*Events are log entries.* A client's PRESENCE (enter, update, leave) is checked
(capability and mode 40160, clientId 40012, size 40009, action 40000), stamped
like a message (``connId:msgSerial:index`` ids, connectionId, clientId, server
timestamp) and handed to the channel's home through the publish path: numbered,
replicated to the other zone, fanned out to every frontend once each in order,
then ACKed. The presence set is the fold of those entries (``presence_set.py``),
kept by the log and carried in its snapshots, so a home move or a replica taking
over keeps it. ATTACHED carries HAS_PRESENCE when the set at the attach point is
not empty, and the set follows the replay as SYNC pages whose channelSerial is a
``<syncId>:<cursor>`` cursor (empty on the last page).

*Members are connection state.* A connection remembers the members it entered
(``Session.presence``, copied to its secondary with the rest of its state), so:

- a resume or a takeover (even after kill -9 of the owner) keeps them: nothing
  is published, nobody sees a leave or an enter (the copy is rewritten on each
  presence change, or, past IMMEDIATE_COPY_MEMBERS members on one connection,
  with the once-a-second cursor batch);
- CLOSE, and DETACH of the channel, leave them at once;
- a connection away for ``presence_linger_ms`` has them left on its behalf by
  its owner (a timer from the detach); when the owner dies, the frontend holding
  its copy leaves them ``presence_linger_ms`` after it sees the owner dead (the
  death took the client's transport with it; a takeover reading the copy
  restarts that clock, and the copy is marked left so a takeover after all
  re-enters them);
- nobody leaves them before every live frontend said it does not own the
  connection at a higher epoch (``presence_owner``, a pull: a lost push or
  discard cannot cause a spurious leave; an owner that learns it was taken
  over drops its stale state), nor while the frontend holding its copy is out
  of the owner's sight (it may have served a takeover; at the TTL they leave);
  a takeover also pushes ``presence_owned`` to every frontend, which ends
  older copies' watches at once;
- an enter of a member the connection already holds is an update (Ably's rule:
  an SDK's RTP17 re-entry on a resumed connection is no second enter);
- a connection that resumes after that (within the TTL) has them re-entered by
  its new or old owner (a new owner: those absent from their channel's set,
  presence_reentry.py), so the others see one leave and one enter; after the
  TTL the SDK re-enters itself (RTP17) on its new connection.

The server's own events carry *synthesized* ids (not prefixed by the
connectionId), so SDKs order them by timestamp (RTP2b1); their timestamp is
never below the member's own.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from frontend.auth import allows
from frontend.channel_log import Entry
from frontend.channel_rules import channel_name_problem
from frontend.channels import AttachResult
from frontend.peerops import Publish, SessionPut
from frontend.presence_reentry import still_absent
from frontend.presence_set import CLIENT_ACTIONS, Member, PresenceAction, PresenceSet, sync_pages
from frontend.presence_watch import CopyWatch, CopyWatches
from frontend.session import Session, SessionState
from kernel.errors import ErrorCode, ErrorInfo, RemoteProtocolError
from kernel.protocol import Action, Encoded, Flag, ProtocolMessage

if TYPE_CHECKING:
    from frontend.node_parts import NodeParts

log = structlog.get_logger("continuity.frontend")

SYNC_PAGE_BYTES = 256 * 1024
SYNC_CACHE_CHANNELS = 64  # channels whose latest SYNC frames are kept for the next attach
RETRY_MS = 1000  # a server leave or re-enter that failed is tried again after this
WRITE_AHEAD_TIMEOUT_S = 2.0  # an enter waits this long at most for its copy to be written
# A connection with at most this many members has its copy rewritten on every presence change;
# beyond, with the cursor batch each second (the copy holds all its members: O(n) per write).
IMMEDIATE_COPY_MEMBERS = 32
FIXTURE_CONNECTION = "sandbox-fixtures"  # the connectionId of the dev-mode sandbox's presence fixtures


class Presence:
    def __init__(self, node: NodeParts) -> None:
        self.node = node
        self._linger: list[tuple[int, str]] = []  # (due, connection id) for the owner's timers
        self.copy_watches = CopyWatches(node, self._emit)
        self._busy: set[str] = set()  # connections with server leaves or a re-entry being numbered
        self._reentering: set[str] = set()  # connections whose server re-entry is being numbered
        self._rejoin: set[str] = set()  # ... and resumed meanwhile: re-entered once they are
        self._ids = itertools.count(1)
        self._sync_cache: OrderedDict[str, tuple[str, list[Encoded]]] = OrderedDict()
        # The node drains: its connections move with their members (a drain hands them over
        # silently), so no linger leaves them here; one whose client does not come back leaves
        # its copy on another frontend, whose watch leaves the members after the linger.
        self.draining = False

    @property
    def linger_ms(self) -> int:
        return self.node.config.presence_linger_ms

    # ------------------------------------------------------------------
    # Client PRESENCE

    def _error(self, s: Session, pm: ProtocolMessage) -> ErrorInfo | None:
        node = self.node
        name = pm.channel
        problem = "PRESENCE needs a channel" if name is None else channel_name_problem(name)
        if problem is not None:
            return ErrorInfo.of(ErrorCode.INVALID_CHANNEL_NAME, problem)
        assert name is not None
        if not pm.presence:
            return ErrorInfo.of(ErrorCode.BAD_REQUEST, "PRESENCE needs at least one presence message")
        cur = s.channels.get(name)
        if not allows(s.identity.capability, name, "presence") or (
            cur is not None and not cur.modes & Flag.PRESENCE
        ):
            return ErrorInfo.of(ErrorCode.CAPABILITY_DENIED, f"permission denied to enter presence on {name}")
        size = sum(_size(m) for m in pm.presence)
        if size > node.config.max_message_size:
            return ErrorInfo.of(
                ErrorCode.MAX_MESSAGE_SIZE_EXCEEDED,
                f"presence size {size} exceeds the maximum of {node.config.max_message_size}",
            )
        for m in pm.presence:
            action = m.get("action")
            if isinstance(action, bool) or not isinstance(action, int) or action not in CLIENT_ACTIONS:
                return ErrorInfo.of(
                    ErrorCode.BAD_REQUEST, f"presence action {action!r} is not enter/update/leave"
                )
            client_id = m.get("clientId") or s.client_id
            if client_id in (None, "*"):
                return ErrorInfo.of(
                    ErrorCode.INVALID_CLIENT_ID, "presence needs a clientId (none on connection)"
                )
            if not s.may_publish_as(m.get("clientId")):
                return ErrorInfo.of(
                    ErrorCode.INVALID_CLIENT_ID,
                    f"presence clientId {m.get('clientId')!r} does not match the connection's",
                )
        return None

    def handle(self, now_ms: int, s: Session, pm: ProtocolMessage) -> None:
        """RTP8/RTP9/RTP10/RTP14/RTP15: enter, update, leave (and their *Client forms)."""
        node = self.node
        if pm.msg_serial is None:
            raise RemoteProtocolError("PRESENCE needs a msgSerial")
        item = s.acks.add(pm.msg_serial)
        error = self._error(s, pm)
        if error is not None:
            node.metrics.errors_sent.labels(code=str(error.code)).inc()
            log.info("presence.refused", connection_id=s.connection_id, channel=pm.channel, code=error.code)
            s.acks.complete(item, error=error)
            node._flush_acks(now_ms, s)
            return
        assert pm.channel is not None and pm.presence is not None
        channel, conn = pm.channel, s.connection_id
        # A member our re-entry is entering again counts as present: the SDK re-enters it too after
        # a non-resumed attach, and two enters without a leave between were observed (chaos seed
        # 607435835: a resume revived from the secondary's copy, 90003, ENTER 961 then ENTER 971).
        back = not s.presence.gone or conn in self._reentering
        held = s.presence.channels.get(channel, {}) if back else {}
        events = []
        for i, m in enumerate(pm.presence):
            out = {k: v for k, v in m.items() if v is not None and k not in ("connectionKey", "serial")}
            if out["action"] == PresenceAction.ENTER and (m.get("clientId") or s.client_id) in held:
                out["action"] = int(PresenceAction.UPDATE)  # entering when already entered is an update
            out.setdefault("id", f"{conn}:{pm.msg_serial}:{i}")  # RTP17g re-entry sends its old id
            out["connectionId"] = conn
            out["clientId"] = m.get("clientId") or s.client_id
            out["timestamp"] = now_ms
            events.append(out)
        acks = s.acks
        # Write ahead: the copy lists a member before its enter goes to the channel's home, so a
        # frontend holding the copy can leave it if this owner dies before writing again. Written
        # after the ACK instead, a kill -9 right after it lost the copy's write: the member stayed
        # present for good (CI, test_member_and_its_frontend_both_die_the_copy_holder_leaves_once;
        # frontend/simpresence.py owner_dies_at_the_ack).
        fresh = [] if s.presence.gone else s.presence.expect(channel, events)

        def done(serials: list[str] | None, err: ErrorInfo | None) -> None:
            s.presence.settle(channel, fresh)
            if serials is not None:
                for e in events:
                    s.presence.record(channel, e)
            if serials is not None or fresh:
                self._copy(s)
            acks.complete(item, serials=serials, error=err)
            if s.acks is acks:
                node._flush_acks(node.channels.now_ms, s)

        node.metrics.presence_in.inc(len(events))
        msg_serial = pm.msg_serial
        if not fresh:
            self._publish(now_ms, conn, channel, msg_serial, events, done)
            return
        node.channels.reserve(conn, channel, msg_serial)  # later publishes keep their order
        self._write_ahead(
            s, lambda: self._publish(node.channels.now_ms, conn, channel, msg_serial, events, done)
        )

    def _write_ahead(self, s: Session, then: Callable[[], None]) -> None:
        """Write ``s``'s copy (which lists its pending members) and ``then()`` once the secondary
        holds it, or could not say so within WRITE_AHEAD_TIMEOUT_S (then its copy is stale anyway,
        and the enter goes ahead: presence is not refused for a peer's sake)."""
        node = self.node
        bus = node.channels.bus
        if bus is None or s.secondary is None or s.presence.count() > IMMEDIATE_COPY_MEMBERS:
            self._copy(s)
            then()
            return
        s.dirty = False

        def written(ok: bool, result: Any) -> None:
            if not ok:
                log.info("presence.copy_unconfirmed", connection_id=s.connection_id, reason=str(result)[:80])
            then()

        bus.request(s.secondary, SessionPut(state=s.to_wire()), written, WRITE_AHEAD_TIMEOUT_S)

    def _copy(self, s: Session) -> None:
        """Rewrite ``s``'s copy now, or with the next batch (each second) past
        IMMEDIATE_COPY_MEMBERS members (a big enterClient user: the copy is O(members))."""
        if s.presence.count() <= IMMEDIATE_COPY_MEMBERS:
            self.node.ownership.replicate(s)
        else:
            s.dirty = True

    def _publish(
        self, now_ms: int, conn: str, channel: str, msg_serial: int, events: list[Member], done: Any
    ) -> None:
        envelope = {
            "action": int(Action.PRESENCE),
            "channel": channel,
            "id": f"{conn}:{msg_serial}",
            "connectionId": conn,
            "timestamp": now_ms,
        }
        pub = Publish(
            channel=channel, connection_id=conn, msg_serial=msg_serial, messages=events, envelope=envelope
        )
        self.node.channels.publish(now_ms, pub, done)

    def enter_fixtures(
        self, now_ms: int, channel: str, fixtures: list[Member], done: Callable[[bool], None]
    ) -> None:
        """Dev-mode sandbox: enter the members a test app's spec lists on ``channel`` (ably-common's
        presence fixtures: clientId, data, encoding) under the connection ``FIXTURE_CONNECTION``,
        which nothing ever leaves. A member already present with the same data is left alone, so
        the next app adds no event to the channel's presence history. ``done(ok)`` once committed."""
        node = self.node

        def got(res: AttachResult) -> None:
            if res.error is not None:
                done(False)
                return
            held = PresenceSet.from_wire(res.presence)
            events: list[Member] = []
            for i, f in enumerate(fixtures):
                client_id = f.get("clientId")
                if not isinstance(client_id, str) or not client_id:
                    continue
                want = {k: f[k] for k in ("data", "encoding", "extras") if f.get(k) is not None}
                m = held.get(FIXTURE_CONNECTION, client_id)
                if m is not None and {k: m.get(k) for k in ("data", "encoding", "extras") if k in m} == want:
                    continue
                events.append(
                    {
                        "action": int(PresenceAction.ENTER),
                        "clientId": client_id,
                        "connectionId": FIXTURE_CONNECTION,
                        "id": f"{FIXTURE_CONNECTION}:{now_ms}:{i}",
                        "timestamp": now_ms,
                        **want,
                    }
                )
            if not events:
                done(True)
                return
            self._publish(
                now_ms,
                FIXTURE_CONNECTION,
                channel,
                now_ms,
                events,
                lambda serials, err: done(serials is not None),
            )

        node.channels.attach(now_ms, channel, None, got, subscribe=False)

    # ------------------------------------------------------------------
    # Attach: HAS_PRESENCE and SYNC

    def sync_frames(self, channel: str, members: list[Member] | None, last_serial: str) -> list[Encoded]:
        """The SYNC pages sending ``members`` (the set at ``last_serial``); empty when there are none.

        The frames of a channel's latest serial are cached: a burst of attaches (a reconnect storm
        after a failover) shares one encoding per wire format instead of building the set again.
        """
        if not members:
            return []
        cached = self._sync_cache.get(channel)
        if cached is not None and cached[0] == last_serial:
            self._sync_cache.move_to_end(channel)
            self.node.metrics.presence_syncs.inc()
            return cached[1]
        sync_id = "".join(c if c.isalnum() else "-" for c in last_serial) or "s"
        pages = sync_pages(
            members, max_members=self.node.config.presence_sync_page, max_bytes=SYNC_PAGE_BYTES
        )
        frames = []
        for n, page in enumerate(pages):
            cursor = str(n + 1) if n + 1 < len(pages) else ""
            wire = {
                "action": int(Action.SYNC),
                "channel": channel,
                "channelSerial": f"{sync_id}:{cursor}",
                "presence": page,  # members are stored with action PRESENT (presence_set.py)
            }
            frames.append(Encoded(wire))
        self._sync_cache[channel] = (last_serial, frames)
        if len(self._sync_cache) > SYNC_CACHE_CHANNELS:
            self._sync_cache.popitem(last=False)
        self.node.metrics.presence_syncs.inc()
        return frames

    def handle_sync(self, now_ms: int, s: Session, pm: ProtocolMessage) -> None:
        """A client's SYNC (ably-js ``channel.sync()``): the channel's current set as SYNC pages.

        The SDK starts a sync on the first page and, on the last (empty cursor), synthesizes a
        leave for every member it holds that the pages did not list (RTP19); so an empty set
        still gets one (empty) page. Refused in the channel's scope when it is not attached with
        PRESENCE_SUBSCRIBE."""
        node = self.node
        name = pm.channel
        if name is None:
            raise RemoteProtocolError("SYNC needs a channel")
        cur = s.channels.get(name)
        if cur is None or not cur.modes & Flag.PRESENCE_SUBSCRIBE:
            node._channel_error(
                now_ms,
                s,
                Action.ERROR,
                name,
                ErrorCode.CHANNEL_OPERATION_FAILED,
                f"SYNC of {name}: the channel is not attached with presence_subscribe",
            )
            return
        generation = s.generation

        def done(res: AttachResult) -> None:
            if s.generation != generation or s.channels.get(name) is not cur or res.error is not None:
                return
            frames = self.sync_frames(name, res.presence, res.last_serial) or [
                Encoded({"action": int(Action.SYNC), "channel": name, "channelSerial": "s:", "presence": []})
            ]
            for frame in frames:
                if not node._send(node.channels.now_ms, s, frame):
                    return

        node.channels.attach(now_ms, name, None, done, subscribe=False)

    # ------------------------------------------------------------------
    # Server events on a connection's behalf

    def _server_events(self, now_ms: int, action: PresenceAction, members: dict[str, Member]) -> list[Member]:
        out = []
        for m in members.values():
            conn = str(m.get("connectionId"))
            event = {
                k: v for k, v in m.items() if k in ("clientId", "connectionId", "data", "encoding", "extras")
            }
            event["action"] = int(action)
            event["id"] = f"!{conn}:{now_ms}:{next(self._ids)}"  # synthesized: RTP2b1 orders by time
            event["timestamp"] = max(now_ms, int(m.get("timestamp") or 0) + 1)
            out.append(event)
        return out

    def _emit(
        self, now_ms: int, conn: str, action: PresenceAction, own: dict[str, dict[str, Member]], then: Any
    ) -> None:
        """Publish ``action`` for every member in ``own`` (channel -> clientId -> member); ``then(ok)``
        once all channels answered."""
        if not own:
            then(True)
            return
        left = len(own)
        failed = False

        def one(serials: list[str] | None, err: ErrorInfo | None) -> None:
            nonlocal left, failed
            left -= 1
            failed = failed or serials is None
            if left == 0:
                then(not failed)

        for channel, members in own.items():
            events = self._server_events(now_ms, action, members)
            # A fresh negative msgSerial: never confused with the client's, never reused after a takeover.
            msg_serial = -(now_ms * 1000 + next(self._ids) % 1000)
            self.node.metrics.presence_server_events.labels(action=action.name.lower()).inc(len(events))
            log.info(
                "presence.server_event",
                connection_id=conn,
                channel=channel,
                action=action.name,
                n=len(events),
            )
            self._publish(now_ms, conn, channel, msg_serial, events, one)

    def leave_now(self, now_ms: int, s: Session, channel: str | None = None) -> None:
        """CLOSE (all channels) or DETACH (one): the connection's members leave at once."""
        own = s.presence
        if not own or own.gone:
            if channel is None:
                own.channels.clear()
            else:
                own.channels.pop(channel, None)
            return
        chosen = dict(own.channels) if channel is None else {channel: own.channels.get(channel, {})}
        chosen = {ch: m for ch, m in chosen.items() if m}
        for ch in chosen:
            own.channels.pop(ch, None)
        self._emit(now_ms, s.connection_id, PresenceAction.LEAVE, chosen, lambda ok: None)

    # -- owner side -------------------------------------------------------
    def detached(self, now_ms: int, s: Session) -> None:
        """The connection's transport went away: its members linger, then leave."""
        if s.presence and not s.presence.gone:
            heapq.heappush(self._linger, (now_ms + self.linger_ms, s.connection_id))

    def bound(self, now_ms: int, s: Session) -> None:
        """A transport took the session (resume or takeover): re-enter members left while away. One
        server publish per connection at a time: a re-entry waits for the leaves still being numbered
        (a home out of reach holds them), else the enter could be numbered first and the leave after
        it (chaos seed 11: observers saw an enter of a present member, then it leave, client connected)."""
        own = s.presence
        if not own or not own.gone:
            return
        conn = s.connection_id
        if conn in self._busy:
            self._rejoin.add(conn)  # looked at again once the leaves are numbered (_settled)
            return
        self._busy.add(conn)
        entering: dict[str, dict[str, Member]] = {}

        def then(ok: bool) -> None:
            self._busy.discard(conn)
            self._reentering.discard(conn)
            if ok:
                own.gone = own.hearsay = False
                for members in entering.values():  # the re-entry is each member's last event now:
                    for m in members.values():  # our own leave, fanned out late, is older (seed 1189035642)
                        m["timestamp"] = max(int(m.get("timestamp") or 0) + 1, now_ms)
                self.node.ownership.replicate(s)
            elif not s.terminal:
                heapq.heappush(self._linger, (self.node.channels.now_ms + RETRY_MS, conn))

        def enter(at_ms: int, absent: dict[str, dict[str, Member]] | None) -> None:
            if absent is None or s.terminal:  # a home not read (tried again), or handed over meanwhile
                then(False)
                return
            entering.update(absent)
            log.info("presence.reenter", connection_id=conn, channels=len(absent))
            self._emit(at_ms, conn, PresenceAction.ENTER, absent, then)

        self._reentering.add(conn)
        if own.hearsay:  # left by another frontend, which may have entered them again (seed 1688680051)
            still_absent(self.node, now_ms, conn, own.channels, lambda a: enter(self.node.channels.now_ms, a))
        else:
            enter(now_ms, own.channels)

    def _settled(self, s: Session) -> None:
        """The connection's server leaves were numbered: a resume that came meanwhile re-enters now."""
        conn = s.connection_id
        if conn in self._rejoin and conn not in self._busy:
            self._rejoin.discard(conn)
            if self.node.sessions.get(conn) is s and s.state is SessionState.ACTIVE:
                self.bound(self.node.channels.now_ms, s)

    def _linger_due(self, now_ms: int, s: Session) -> None:
        own = s.presence
        if s.state is SessionState.ACTIVE and own.gone:
            self.bound(now_ms, s)  # a re-enter that failed earlier
            return
        if s.state is not SessionState.DETACHED or not own or own.gone:
            return
        if s.detached_ms is not None and now_ms < s.detached_ms + self.linger_ms:
            heapq.heappush(self._linger, (s.detached_ms + self.linger_ms, s.connection_id))
            return
        if self.draining:
            # Chaos seed 1141510304 (t 77-85 s): fe-b1's drain cut sub19 at 78.3 s, the client
            # resumed on fe-a2 at 83.7 s, and the draining node's linger left its member at 83.3 s:
            # 158 observers saw a leave and an enter of a member that never went away.
            heapq.heappush(self._linger, (now_ms + RETRY_MS, s.connection_id))
            return
        node = self.node
        conn = s.connection_id

        def retry() -> None:
            heapq.heappush(self._linger, (node.channels.now_ms + RETRY_MS, conn))

        if self.copy_watches.copy_out_of_sight(s.secondary):
            retry()  # a takeover from our copy there would go unheard (chaos seed 475497038)
            return

        def confirmed(verdict: bool | None) -> None:
            # Only the session we asked for, still away: a resume meanwhile keeps the members.
            if node.sessions.get(conn) is not s or s.state is not SessionState.DETACHED or own.gone:
                return
            if verdict is None:
                retry()  # a frontend did not answer: ask again
                return
            if not verdict:
                # Taken over elsewhere while we could not hear of it (a discard still on its way):
                # our state is stale, and its members belong to the new owner.
                log.info("presence.stale_owner", connection_id=conn, epoch=s.epoch)
                node.drop_session(s)
                return
            if conn in self._busy:
                retry()  # a re-entry of the connection is still being numbered
                return
            own.gone = True  # set first: a resume meanwhile re-enters after these leaves
            self._busy.add(conn)

            def then(ok: bool) -> None:
                self._busy.discard(conn)
                if not ok and own.gone and not s.terminal:
                    own.gone = False
                    retry()
                node.ownership.replicate(s)
                self._settled(s)

            self._emit(node.channels.now_ms, conn, PresenceAction.LEAVE, own.channels, then)

        self.copy_watches.confirm_unowned(conn, s.epoch, confirmed)

    def expired(self, now_ms: int, s: Session) -> None:
        """The session's TTL elapsed (a linger longer than the TTL): its members leave now."""
        if s.presence and not s.presence.gone:
            s.presence.gone = True
            self._emit(now_ms, s.connection_id, PresenceAction.LEAVE, s.presence.channels, lambda ok: None)

    def fanned_out(self, now_ms: int, channel: str, entry: Entry, publisher: str | None) -> None:
        """Every entry numbered for ``channel`` reaches this node's subscribers here; a server
        leave of a member that lives here is answered (``CopyWatches.entry_seen``)."""
        self.node.fan_out(now_ms, channel, entry, publisher)
        if entry.is_presence:
            self.copy_watches.entry_seen(now_ms, channel, entry.frame.wire["presence"])

    # -- copies held here (presence_watch.py) ---------------------------------
    @property
    def watches(self) -> dict[str, CopyWatch]:
        return self.copy_watches.watches

    def owns(self, conn: str, epoch: int) -> bool:
        return self.copy_watches.owns(conn, epoch)

    def copy_read(self, now_ms: int, conn: str) -> None:
        self.copy_watches.copy_read(now_ms, conn)

    def copy_put(self, now_ms: int, owner: str, state: dict[str, Any]) -> None:
        self.copy_watches.copy_put(now_ms, owner, state)

    def copy_discarded(self, conn: str, below_epoch: int) -> None:
        self.copy_watches.copy_discarded(conn, below_epoch)

    # ------------------------------------------------------------------
    # Time

    def tick(self, now_ms: int) -> None:
        while self._linger and self._linger[0][0] <= now_ms:
            _, conn = heapq.heappop(self._linger)
            s = self.node.sessions.get(conn)
            if s is not None and not s.terminal:
                self._linger_due(now_ms, s)

    def sweep(self, now_ms: int) -> None:
        """Once a second: the copies whose owner may be dead."""
        if self.copy_watches.watches:
            self.copy_watches.check(now_ms)

    def next_deadline(self) -> int | None:
        return self._linger[0][0] if self._linger else None


def _size(m: Member) -> int:
    size = 0
    for key in ("data", "clientId"):
        v = m.get(key)
        if isinstance(v, str):
            size += len(v.encode("utf-8", "surrogatepass"))
        elif isinstance(v, (bytes, bytearray)):
            size += len(v)
        elif v is not None:
            size += len(repr(v))
    return size
