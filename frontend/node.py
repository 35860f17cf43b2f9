"""FrontendNode: the frontend's protocol core, shared by every transport.

Theory of operation
-------------------
The node owns the sessions (connection state) and the channel logs, and turns
each inbound ProtocolMessage into state changes plus frames queued on
*outlets*. An outlet is the transport's bounded outbox (WebSocket or Comet);
queuing a frame is not I/O, so the node stays free of trio and of the clock:
every entry point takes ``now_ms``. The driver calls ``tick`` by
``next_deadline``.

The invariants it keeps (DESIGN section 7):

- A channel's frames reach a transport only after that channel's ATTACHED was
  queued on it; an ATTACH that resumes queues ATTACHED(RESUMED), the replay
  and then registers for live traffic in one synchronous step, so nothing can
  interleave: no gap, no duplicate.
- A publish is appended to the channel log (which numbers it), fanned out as
  one shared ``Encoded`` (encoded at most once per wire format), then ACKed in
  msgSerial order. A re-sent publish is answered from the log's memory.
- A lost transport keeps the session (cursors only) for the TTL. CLOSE
  disposes it. A slow consumer's transport is cut with a resumable
  DISCONNECTED; nothing is lost because replay comes from the log.

Cluster note: placement of sessions and logs on several frontends is layered
on top (issue "cluster"); this core never assumes it is the only node: keys
name their owner, and ``owns`` decides.
"""

from __future__ import annotations

import heapq
import random
import sys
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from frontend import peerops as O
from frontend.auth import Authenticator, AuthError, Identity
from frontend.channel_log import Entry
from frontend.channel_modes import ChannelModes
from frontend.channels import ChannelService
from frontend.config import FrontendConfig
from frontend.metrics import Metrics
from frontend.node_parts import Outlet
from frontend.ownership import Ownership
from frontend.persistence import Persistence
from frontend.presence import Presence
from frontend.pubsub import PubSub, server_message
from frontend.sandbox import SandboxKeys
from frontend.session import Session, SessionState
from frontend.store_attach import StoreAttach
from frontend.takeover import Takeover
from frontend.tokens import TokenAuthenticator
from kernel import protocol as P
from kernel.errors import ErrorCode, ErrorInfo
from kernel.keys import ConnectionKey, InvalidKey, KeySigner, new_connection_id
from kernel.placement import ClusterView
from kernel.protocol import Action, Encoded, ProtocolMessage

log = structlog.get_logger("continuity.frontend")

LOG_SWEEP_MS = 1000


class FrontendNode:
    def __init__(
        self,
        config: FrontendConfig,
        *,
        rng: random.Random,
        metrics: Metrics | None = None,
        signer: KeySigner | None = None,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self._rng = rng
        self.metrics = metrics or Metrics()
        self.signer = signer or KeySigner([config.cluster_secret])
        # The dev-mode sandbox's self-verifying keys (frontend.sandbox); None outside dev mode.
        self.sandbox_keys = SandboxKeys(config.secrets) if config.dev else None
        self.auth = authenticator or TokenAuthenticator(
            config.keys,
            dev=config.dev,
            extra_keys=self.sandbox_keys.resolve if self.sandbox_keys is not None else None,
            accept_any_key=config.dev_accept_any_key,
        )
        self.sessions: dict[str, Session] = {}
        self.outlets: dict[str, Outlet] = {}
        self.channel_modes = ChannelModes(self)
        self.pubsub = PubSub(self, self.channel_modes, StoreAttach(self))
        self.channels = ChannelService(
            config.node_id,
            config,
            rng=rng,
            metrics=self.metrics,
            fan_out=lambda now_ms, name, entry, pub: self.presence.fanned_out(now_ms, name, entry, pub),
            lost=self.pubsub.notify_lost,
            local_interest=lambda name: bool(self.subscribers.get(name)),
        )
        self.subscribers: dict[str, dict[str, Session]] = {}
        self.persistence: Persistence | None = None  # set by the driver when a rule persists channels
        self.channels.local_serials = lambda name: [
            sub.channels[name].serial for sub in self.subscribers.get(name, {}).values()
        ]
        self._expiry: list[tuple[int, str]] = []
        self._token_expiry: list[tuple[int, str]] = []  # (expires, connectionId) of token identities
        # Peer ops served outside the channel and session cores (the REST layer's, frontend.rest).
        self.peer_ops: dict[str, Callable[[int, str, dict[str, Any], Callable[[bool, Any], None]], None]] = {}
        self._next_sweep = 0
        self.ownership = Ownership(self)
        self.takeover = Takeover(self)
        self.presence: Presence = Presence(self)
        # Called when sessions or channel homes go away (the drain waits on it).
        self.on_change: Callable[[], None] = lambda: None
        # The timer driver's wake-up (frontend/ticker.py), called by the drivers after they feed an
        # input, never by the core: the driver then re-reads next_deadline().
        self.wake: Callable[[], None] = lambda: None
        # Called after each new cluster map (the REST layer's token revocations sync new peers).
        self.view_listeners: list[Callable[[int, ClusterView], None]] = []
        self._handlers: dict[Action, Callable[[int, Session, ProtocolMessage], None]] = {
            Action.HEARTBEAT: self.handle_heartbeat,
            Action.ATTACH: self.pubsub.handle_attach,
            Action.DETACH: self.pubsub.handle_detach,
            Action.MESSAGE: self.pubsub.handle_message,
            Action.PRESENCE: self.presence.handle,
            Action.SYNC: self.presence.handle_sync,
            Action.ANNOTATION: self.pubsub.handle_unsupported_publish,
            Action.OBJECT: self.pubsub.handle_unsupported_publish,
            Action.CLOSE: self.handle_close,
            Action.DISCONNECT: self.handle_disconnect,
            Action.AUTH: self.handle_auth,
        }

    # ------------------------------------------------------------------
    # Connection establishment

    def connection_details(self, s: Session) -> dict[str, Any]:
        c = self.config
        return {
            "clientId": s.client_id,
            "connectionKey": s.key,
            "connectionStateTtl": c.connection_state_ttl_ms,
            "maxIdleInterval": c.max_idle_interval_ms,
            "maxMessageSize": c.max_message_size,
            "maxFrameSize": c.max_frame_size,
            "maxInboundRate": 10_000,
            "serverId": f"continuity.{self.node_id}",
            "siteCode": c.zone,
        }

    def _connected(self, s: Session, error: ErrorInfo | None = None) -> Encoded:
        return server_message(
            Action.CONNECTED,
            connection_id=s.connection_id,
            connection_details=self.connection_details(s),
            error=error,
        )

    def connect(self, now_ms: int, params: Mapping[str, str], outlet: Outlet) -> Session | None:
        """A transport opened with ``params`` (the §1.1 query). Queues CONNECTED or ERROR.

        Returns the bound session, or None when the connection was refused
        in-band (the outlet is then closed).
        """
        version = params.get("v")
        if version is not None and (not version.isdigit() or int(version) < P.MIN_PROTOCOL_VERSION):
            self._refuse(
                outlet, ErrorInfo.of(ErrorCode.BAD_REQUEST, f"unsupported protocol version v={version}")
            )
            return None
        token = params.get("access_token") or params.get("accessToken")
        try:
            ident = self.auth.authenticate(
                now_ms, key=params.get("key"), token=token, client_id=params.get("clientId") or None
            )
        except AuthError as exc:
            self.metrics.auth_failures.labels(code=str(int(exc.code))).inc()
            log.info("connection.refused", code=int(exc.code), reason=str(exc))
            self._refuse(outlet, exc.info())
            return None

        echo = params.get("echo") != "false"
        requested = params.get("resume") or params.get("recover")
        kind = "resume" if params.get("resume") else "recover"
        error: ErrorInfo | None = None
        if requested:
            session, error = self._find_for_resume(requested, ident)
            if session is not None:
                if ident.expires_ms is not None or session.identity.expires_ms is not None:
                    session.identity = ident  # a renewed token (RTN15h2) replaces the expired one
                if kind == "recover":
                    self._supersede(now_ms, session)
                self._bind(now_ms, session, outlet, echo)
                session.resumed_ms = now_ms
                if kind == "recover":
                    self.ownership.replicate(session)
                self.metrics.resumes.labels(result="ok").inc()
                log.info("connection.resumed", connection_id=session.connection_id, kind=kind)
                outlet.send(self._connected(session))
                self.presence.bound(now_ms, session)
                return session
            self.metrics.resumes.labels(result="failed").inc()
            assert error is not None
            log.info("connection.resume_failed", kind=kind, code=error.code, reason=error.message)

        conn_id = new_connection_id(self._rng)
        secondary = self.channels.placement.connection_secondary(conn_id, self.node_id)
        key = self.signer.sign(
            ConnectionKey(owner=self.node_id, secondary=secondary, connection_id=conn_id, epoch=1)
        )
        session = Session(
            connection_id=conn_id,
            key=key,
            epoch=1,
            identity=ident,
            client_id=ident.client_id,
            echo=echo,
            created_ms=now_ms,
            secondary=secondary,
        )
        self.sessions[conn_id] = session
        self._bind(now_ms, session, outlet, echo)
        self.ownership.replicate(session)
        log.info("connection.opened", connection_id=conn_id, client_id=ident.client_id, format=outlet.fmt)
        outlet.send(self._connected(session, error))
        return session

    def _supersede(self, now_ms: int, s: Session) -> None:
        """A recover (RTN16) moves the connection to a new holder under a new key (epoch + 1).

        Exactly one client holds a connection: the previous key no longer resumes it (80008, a
        new connectionId, RTN15c7), and a transport still bound to it, the previous holder if it
        is alive, is closed with a DISCONNECTED saying why, so it resumes, is refused, and carries
        on under a new connectionId with that error, never silently (and never takes it back).
        """
        s.epoch += 1
        s.key = self.signer.sign(
            ConnectionKey(
                owner=self.node_id, secondary=s.secondary, connection_id=s.connection_id, epoch=s.epoch
            )
        )
        s.replaced_key, s.key_confirmed = None, True
        old = self.outlets.pop(s.connection_id, None)
        if old is None:
            return
        self._unsubscribe_all(s)
        error = ErrorInfo.of(
            ErrorCode.CONNECTION_EXPIRED,
            "this connection was recovered by another client; it continues there",
        )
        self.metrics.errors_sent.labels(code=str(error.code)).inc()
        old.close(server_message(Action.DISCONNECTED, error=error))
        log.info("connection.superseded", connection_id=s.connection_id, epoch=s.epoch)

    def _refuse(self, outlet: Outlet, error: ErrorInfo) -> None:
        self.metrics.errors_sent.labels(code=str(error.code)).inc()
        outlet.close(server_message(Action.ERROR, error=error))

    def owns(self, key: ConnectionKey) -> bool:
        return key.owner == self.node_id

    def _find_for_resume(self, text: str, ident: Identity) -> tuple[Session | None, ErrorInfo | None]:
        """RTN15c: the session a resume/recover key names, or the error to report."""
        try:
            key = self.signer.verify(text)
        except InvalidKey as exc:
            return None, ErrorInfo.of(ErrorCode.INVALID_CONNECTION_KEY, f"invalid connection key: {exc}")
        session = self.sessions.get(key.connection_id) if self.owns(key) else None
        if session is None or session.terminal or session.epoch != key.epoch or session.key != text:
            return None, ErrorInfo.of(
                ErrorCode.CONNECTION_EXPIRED, "unable to resume: connection unknown or expired"
            )
        if not self.config.dev and session.identity.key_name != ident.key_name:
            return None, ErrorInfo.of(
                ErrorCode.INVALID_CONNECTION_KEY, "connection key belongs to another key"
            )
        return session, None

    def _bind(self, now_ms: int, s: Session, outlet: Outlet, echo: bool) -> None:
        old = self.outlets.pop(s.connection_id, None)
        if old is not None:
            # A second transport resumed while the first looked alive: the newest wins.
            self._unsubscribe_all(s)
            old.close(None)
        s.bind(now_ms)
        s.echo = echo
        self.outlets[s.connection_id] = outlet
        self.metrics.connections_live.set(len(self.outlets))
        self.metrics.connections_detached.set(len(self.sessions) - len(self.outlets))
        self._watch_token(s)

    def _watch_token(self, s: Session) -> None:
        if s.identity.expires_ms is not None:
            heapq.heappush(self._token_expiry, (s.identity.expires_ms, s.connection_id))

    def _expire_tokens(self, now_ms: int) -> None:
        """A live connection whose token expired gets DISCONNECTED 40142: the SDK renews its token
        and resumes (RTN15h2), so its continuity is kept; an AUTH before expiry moves the deadline."""
        while self._token_expiry and self._token_expiry[0][0] <= now_ms:
            expires, conn_id = heapq.heappop(self._token_expiry)
            s = self.sessions.get(conn_id)
            if s is None or s.identity.expires_ms != expires:
                continue
            log.info("connection.token_expired", connection_id=conn_id)
            self.metrics.auth_failures.labels(code=str(int(ErrorCode.TOKEN_EXPIRED))).inc()
            self.cut(now_ms, s, ErrorInfo.of(ErrorCode.TOKEN_EXPIRED, "token expired"))

    # ------------------------------------------------------------------
    # Transport lifecycle

    def transport_lost(self, now_ms: int, s: Session, outlet: Outlet) -> None:
        """The transport behind ``outlet`` is gone; keep the session for the TTL."""
        if self.outlets.get(s.connection_id) is not outlet:
            return  # already replaced by a newer transport, or closed
        del self.outlets[s.connection_id]
        self._unsubscribe_all(s)
        if s.terminal:
            return
        s.unbind(now_ms)
        self.presence.detached(now_ms, s)
        deadline = s.expires_at(self.config.connection_state_ttl_ms)
        assert deadline is not None
        heapq.heappush(self._expiry, (deadline, s.connection_id))
        self.ownership.replicate(s)
        self.metrics.connections_live.set(len(self.outlets))
        self.metrics.connections_detached.set(len(self.sessions) - len(self.outlets))
        s.park()  # after the copy above: a detached session keeps its cursors packed
        log.info("connection.detached", connection_id=s.connection_id)

    def cut(self, now_ms: int, s: Session, error: ErrorInfo) -> None:
        """Close the transport with a resumable DISCONNECTED; keep the state."""
        outlet = self.outlets.get(s.connection_id)
        if outlet is None:
            return
        outlet.close(server_message(Action.DISCONNECTED, error=error))
        self.transport_lost(now_ms, s, outlet)

    def _unsubscribe_all(self, s: Session) -> None:
        for name in s.channels:
            self._unsubscribe(s, name)

    def _unsubscribe(self, s: Session, name: str) -> None:
        subs = self.subscribers.get(name)
        if subs is not None and subs.pop(s.connection_id, None) is not None and not subs:
            del self.subscribers[name]
            self.channels.release(name)

    def drop_session(self, s: Session) -> None:
        """Forget a session now owned elsewhere (handed over or fenced): close its transport."""
        outlet = self.outlets.get(s.connection_id)
        self._dispose(s)
        s.close()
        if outlet is not None:
            outlet.close(None)

    def _dispose(self, s: Session) -> None:
        self.on_change()
        self._unsubscribe_all(s)
        self.sessions.pop(s.connection_id, None)
        self.outlets.pop(s.connection_id, None)
        self.metrics.connections_live.set(len(self.outlets))
        self.metrics.connections_detached.set(len(self.sessions) - len(self.outlets))

    # ------------------------------------------------------------------
    # Inbound dispatch

    def handle(self, now_ms: int, s: Session, pm: ProtocolMessage) -> None:
        """Apply one inbound ProtocolMessage. Raises RemoteProtocolError for a bad one."""
        if s.terminal or self.outlets.get(s.connection_id) is None:
            return  # late input from a transport that no longer holds the session
        self.metrics.frames_in.inc()
        if not s.key_confirmed:
            s.key_confirmed = True  # it speaks on a transport whose CONNECTED carried the new key
        handler = self._handlers.get(pm.action)
        if handler is None:
            log.debug("frame.ignored", action=int(pm.action), connection_id=s.connection_id)
            return
        handler(now_ms, s, pm)

    def _send(self, now_ms: int, s: Session, frame: Encoded) -> bool:
        outlet = self.outlets.get(s.connection_id)
        if outlet is None or self.sessions.get(s.connection_id) is not s:
            return False  # no transport, or ``s`` was replaced (a late answer to a request of its own)
        if outlet.send(frame):
            return True
        self.metrics.slow_consumers.inc()
        log.info("connection.slow_consumer", connection_id=s.connection_id)
        self.cut(
            now_ms,
            s,
            ErrorInfo.of(ErrorCode.SLOW_CONSUMER, "client too slow: outbox full; resume to continue"),
        )
        return False

    # What the node's parts ask of its channel half (``pubsub.py``).
    def fan_out(self, now_ms: int, channel: str, entry: Entry, publisher: str | None) -> None:
        self.pubsub.fan_out(now_ms, channel, entry, publisher)

    def _flush_acks(self, now_ms: int, s: Session) -> None:
        self.pubsub.flush_acks(now_ms, s)

    def _channel_error(
        self, now_ms: int, s: Session, action: Action, name: str, code: ErrorCode, msg: str
    ) -> None:
        self.pubsub.channel_error(now_ms, s, action, name, code, msg)

    def handle_heartbeat(self, now_ms: int, s: Session, pm: ProtocolMessage) -> None:
        # RTN13e: echo the ping id.
        if pm.id is not None:
            self._send(now_ms, s, server_message(Action.HEARTBEAT, id=pm.id))

    def handle_close(self, now_ms: int, s: Session, pm: ProtocolMessage) -> None:
        outlet = self.outlets.get(s.connection_id)
        self.presence.leave_now(now_ms, s)
        self._dispose(s)
        s.close()
        self.ownership.closed(now_ms, s)
        log.info("connection.closed", connection_id=s.connection_id)
        if outlet is not None:
            outlet.send(server_message(Action.CLOSED, connection_id=s.connection_id))
            outlet.close(None)

    def end_session(self, now_ms: int, s: Session, error: ErrorInfo) -> None:
        """End a connection for good from the server side (an operator's kick): ERROR to its
        client (no resume), its state and its copy discarded, as a client's CLOSE does."""
        outlet = self.outlets.get(s.connection_id)
        self._dispose(s)
        s.close()
        self.ownership.closed(now_ms, s)
        log.info("connection.ended", connection_id=s.connection_id, code=error.code)
        if outlet is not None:
            outlet.close(server_message(Action.ERROR, error=error))

    def handle_disconnect(self, now_ms: int, s: Session, pm: ProtocolMessage) -> None:
        outlet = self.outlets.get(s.connection_id)
        if outlet is not None:
            outlet.close(None)
            self.transport_lost(now_ms, s, outlet)

    def handle_auth(self, now_ms: int, s: Session, pm: ProtocolMessage) -> None:
        """RTN22/RTN24: reauthenticate in place; CONNECTED (same id) or ERROR."""
        token = (pm.auth or {}).get("accessToken")
        try:
            if not isinstance(token, str):
                raise AuthError(ErrorCode.TOKEN_UNRECOGNISED, "AUTH needs auth.accessToken")
            ident = self.auth.authenticate(now_ms, key=None, token=token, client_id=None)
            if s.client_id not in (None, "*") and ident.client_id not in (None, "*", s.client_id):
                raise AuthError(ErrorCode.INVALID_CLIENT_ID, "reauth may not change the clientId")
        except AuthError as exc:
            self.metrics.auth_failures.labels(code=str(int(exc.code))).inc()
            outlet = self.outlets.get(s.connection_id)
            if outlet is not None:
                outlet.close(server_message(Action.ERROR, error=exc.info()))
                self.transport_lost(now_ms, s, outlet)
            return
        s.identity = ident
        self._watch_token(s)
        if s.client_id is None and ident.client_id is not None:
            s.client_id = ident.client_id
            self.ownership.replicate(s)
        self._send(now_ms, s, self._connected(s))
        self.channel_modes.apply_capability(now_ms, s)

    # ------------------------------------------------------------------
    # Time

    def tick(self, now_ms: int) -> None:
        """Expire detached sessions past their TTL and age channel logs."""
        ttl = self.config.connection_state_ttl_ms
        while self._expiry and self._expiry[0][0] <= now_ms:
            deadline, conn_id = heapq.heappop(self._expiry)
            s = self.sessions.get(conn_id)
            if s is None or s.state is not SessionState.DETACHED or s.expires_at(ttl) != deadline:
                continue
            self.presence.expired(now_ms, s)
            self._dispose(s)
            s.expire()
            self.metrics.expired.inc()
            log.info("connection.expired", connection_id=conn_id)
        self._expire_tokens(now_ms)
        self.channels.tick(now_ms)
        self.presence.tick(now_ms)
        if now_ms >= self._next_sweep:
            self._next_sweep = now_ms + LOG_SWEEP_MS
            self.channels.home_side.retire_idle(now_ms)
            self.ownership.flush_dirty()
            self.ownership.refresh_copies(now_ms)
            self.ownership.expire(now_ms)
            self.ownership.resend_discards(self.channels.view.alive)
            self.presence.sweep(now_ms)

    def next_deadline(self) -> int:
        nxt = self._next_sweep
        if self._expiry:
            nxt = min(nxt, self._expiry[0][0])
        linger = self.presence.next_deadline()
        if linger is not None:
            nxt = min(nxt, linger)
        if self._token_expiry:
            nxt = min(nxt, self._token_expiry[0][0])
        retry = self.channels.next_deadline()
        return nxt if retry is None else min(nxt, retry)

    # ------------------------------------------------------------------
    # Peers

    def handle_peer_request(
        self, now_ms: int, src: str, op: O.PeerOp, reply: Callable[[bool, Any], None]
    ) -> None:
        """A request from another frontend; ``reply(ok, result)`` exactly once."""
        match op:
            case O.PresenceOwned(connection_id=conn_id, epoch=epoch):
                self.presence.copy_discarded(conn_id, epoch)
                reply(True, None)
            case O.PresenceOwner(connection_id=conn_id, epoch=epoch, owner=owner):
                alive = owner is not None and owner != src and self.channels.view.alive(owner)
                reply(True, {"owned": self.presence.owns(conn_id, epoch), "owner_alive": alive})
            case O.SessionPut() | O.SessionFetch() | O.Handover() | O.Discard():
                self.ownership.handle_request(now_ms, src, op, reply)
            case O.RestCall():
                serve = self.peer_ops.get(op.kind)
                if serve is None:
                    reply(False, O.Refused(O.Refusal.BAD_REQUEST, f"unknown REST op {op.kind!r:.40}"))
                else:
                    serve(now_ms, src, op.args, reply)
            case _:
                self.channels.handle_request(now_ms, src, op, reply)

    def handle_peer_push(self, now_ms: int, src: str, op: O.PeerOp) -> None:
        match op:
            case O.PresenceOwned(connection_id=conn_id, epoch=epoch):
                self.presence.copy_discarded(conn_id, epoch)
            case O.SessionPut() | O.SessionFetch() | O.Handover() | O.Discard():
                self.ownership.handle_push(now_ms, src, op)
            case O.RestCall() | O.PresenceOwner():
                log.warning("peer.unexpected_push", peer=src, op=op.OP)  # requests, never pushes
            case _:
                self.channels.handle_push(now_ms, src, op)

    def apply_view(self, now_ms: int, view: ClusterView) -> None:
        """A new cluster map: re-place channels, re-send unconfirmed discards, re-pick secondaries."""
        self.channels.set_view(now_ms, view)
        self.ownership.resend_discards(view.alive)
        self.ownership.reassign_secondaries()
        for listener in self.view_listeners:
            listener(now_ms, view)

    def refresh_gauges(self) -> None:
        """Recompute gauges that are too costly to keep current on every event."""
        self.metrics.connections_live.set(len(self.outlets))
        self.metrics.connections_detached.set(len(self.sessions) - len(self.outlets))
        detached = [s for s in self.sessions.values() if s.state is SessionState.DETACHED]
        # Each also costs this node its slot in ``sessions`` and its expiry entry (a tuple and an int).
        index = sys.getsizeof(self.sessions) / max(1, len(self.sessions)) + sys.getsizeof((0, "")) + 32
        self.metrics.detached_state_bytes.set(sum(s.state_size() for s in detached) + index * len(detached))
        self.metrics.retained_messages.set(sum(h.log.retained_messages for h in self.channels.homes.values()))
        self.metrics.replication_degraded.set(1 if self.channels.replication_degraded() else 0)
        self.metrics.write_available.set(1 if self.channels.write_available() else 0)

    def describe(self, connection_id: str) -> dict[str, Any]:
        """What this node holds for a connection (``GET /debug/connections/<id>``); never the key."""
        s = self.sessions.get(connection_id)
        if s is not None:
            return {
                "state": s.state.value,
                "epoch": s.epoch,
                "secondary": s.secondary,
                "channels": sorted(s.channels),
            }
        if self.ownership.copies.get(self.channels.now_ms, connection_id) is not None:
            return {"state": "copy"}
        stone = self.ownership.tombstones.get(self.channels.now_ms, connection_id)
        if stone is not None:
            return {"state": "handed_over", "to": stone.new_owner, "epoch": stone.epoch}
        return {"state": "unknown"}

    def snapshot(self) -> dict[str, Any]:
        """This node, as JSON for ``GET /cluster``."""
        return {
            "node_id": self.node_id,
            "zone": self.config.zone,
            "role": "frontend",
            "state": "active",
            "connections": {"live": len(self.outlets), "detached": len(self.sessions) - len(self.outlets)},
            "channels": {"home": sorted(self.channels.homes), "replica": sorted(self.channels.replicas)},
            "write": self.channels.write_status(),
            "members": [
                {
                    "node_id": self.node_id,
                    "zone": self.config.zone,
                    "role": "frontend",
                    "state": "alive",
                    "active": True,
                }
            ],
        }
