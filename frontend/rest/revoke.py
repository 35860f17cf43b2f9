"""Token revocation: ``POST /keys/{keyName}/revokeTokens`` (RSA17), spread through the cluster.

The records and their matching are ``frontend.revocation`` (pure); this is their driver:

- **The request.** Basic auth with the key named in the path (a token gets 40162, another key
  40102), which must have revocable tokens (40163). Each valid target becomes a record; the
  answer is a BatchResult (``successCount``, ``failureCount``, ``results``: TRS2 or TRF2 per
  target, in order). The records are in force here before the answer leaves.
- **Spreading.** The new records go to every live frontend as a peer request (``RestCall``
  ``token_revoke``); the answer waits for their acknowledgements up to ``SPREAD_TIMEOUT_S``.
  Merging is idempotent and order-free, so delivery at least once is all that is needed: a
  peer that did not acknowledge is retried (its whole list) every ``RETRY_MS`` until it does,
  and a frontend that comes alive in the map (a new one, a restarted one, one back from a
  partition) is sent the whole list. A frontend's list is therefore eventually the union of
  every list it can reach; between the answer and a lagging peer's merge that peer may still
  accept a revoked token, as Ably documents its own revocation taking a moment to apply.
- **Enforcement.** A record in force makes ``TokenAuthenticator`` refuse the tokens it matches
  (40141) on REST, connect, resume and AUTH. A live connection whose token it matches is cut
  with a resumable DISCONNECTED 40141 when the record comes into force (at once, or after the
  reauth margin, ``run`` waits for that): an SDK that can fetch a new token does and resumes;
  one that cannot fails, as RSA4a2 says.

Revocations live in memory: a whole-cluster restart forgets them (the tokens stay verifiable,
being self-contained); one frontend's restart does not (its peers send it their lists).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog
import trio

from frontend import peerops as O
from frontend.auth import AuthError
from frontend.clock import wall_ms
from frontend.rest.credentials import credentials, identify
from frontend.rest.wire import RestError, RestRequest
from frontend.revocation import Revocation, RevocationError, RevocationList, parse_request
from frontend.tokens import TokenAuthenticator
from kernel.errors import ErrorCode, ErrorInfo
from kernel.placement import ClusterView

if TYPE_CHECKING:
    from frontend.node import FrontendNode

log = structlog.get_logger("continuity.frontend")

SPREAD_TIMEOUT_S = 2.0
RETRY_MS = 2_000
PRUNE_EVERY_MS = 60_000
CHUNK = 2_000  # records per peer request when sending a whole list


class TokenRevoker:
    def __init__(self, node: FrontendNode, now_ms: Callable[[], int] = wall_ms) -> None:
        self.node = node
        self.now_ms = now_ms
        auth = node.auth
        self.revocations = auth.revocations if isinstance(auth, TokenAuthenticator) else RevocationList()
        self._alive: set[str] = set()
        self._unsynced: dict[str, int] = {}  # peer that missed a push -> when to re-send it the list
        self._wake = trio.Event()
        node.peer_ops["token_revoke"] = self._serve
        node.view_listeners.append(self._view_changed)

    # -- the request ----------------------------------------------------------------

    async def revoke(self, req: RestRequest, key_name: str) -> dict[str, Any]:
        """Answer one revokeTokens request: the BatchResult (RestError/AuthError otherwise)."""
        auth = self.node.auth
        now = self.now_ms()
        creds = credentials(req)
        if creds.token is not None:
            raise RestError(
                ErrorCode.TOKEN_AUTH_NOT_PERMITTED, "revoking tokens needs Basic auth with the key"
            )
        if creds.key is None:
            raise AuthError(ErrorCode.UNAUTHORIZED, "revokeTokens needs Basic auth with the key")
        identify(auth, now, creds)
        if creds.key_name != key_name:
            raise RestError(
                ErrorCode.INCOMPATIBLE_CREDENTIALS, "revokeTokens for another key than the one used"
            )
        key = auth.key_for(key_name, creds.key_secret) if isinstance(auth, TokenAuthenticator) else None
        if key is None or not key.revocable_tokens:
            raise RestError(
                ErrorCode.TOKENS_NOT_REVOCABLE, f"key {key_name} was not created with revocable tokens"
            )
        try:
            records, results = parse_request(now, key_name, req.decode_body())
        except RevocationError as exc:
            raise RestError(ErrorCode(exc.code), str(exc)) from None
        if not self.revocations.room_for(len(records)):
            raise RestError(ErrorCode.INVALID_PARAMETER, "too many revocations in force; retry later")
        added = self.merge(now, records)
        failures = sum(1 for r in results if "error" in r)
        log.info("rest.tokens_revoked", key_name=key_name, targets=len(results), failed=failures)
        self.node.metrics.tokens_revoked.inc(len(added))
        await self._spread(added)
        return {"successCount": len(results) - failures, "failureCount": failures, "results": results}

    # -- merging and enforcing ----------------------------------------------------

    def merge(self, now_ms: int, records: Iterable[Revocation]) -> list[Revocation]:
        """Add ``records``; cut the live connections those in force already refuse; the new ones."""
        added = [r for r in records if self.revocations.add(now_ms, r)]
        in_force = [r for r in added if r.applies_at_ms <= now_ms]
        if in_force:
            self.enforce(now_ms, in_force)
        if any(r.applies_at_ms > now_ms for r in added):
            self._wake.set()
        return added

    def enforce(self, now_ms: int, records: list[Revocation]) -> int:
        """Cut every live connection of this frontend whose token one of ``records`` refuses."""
        node = self.node
        cut = 0
        for s in list(node.sessions.values()):
            if s.connection_id not in node.outlets or not any(r.matches(s.identity) for r in records):
                continue
            log.info("connection.token_revoked", connection_id=s.connection_id, key_name=s.identity.key_name)
            node.metrics.auth_failures.labels(code=str(int(ErrorCode.TOKEN_REVOKED))).inc()
            node.cut(now_ms, s, ErrorInfo.of(ErrorCode.TOKEN_REVOKED, "token revoked"))
            cut += 1
        node.wake()
        return cut

    def tick(self, now_ms: int) -> None:
        """Enforce the records that came into force; re-send the list to peers whose retry is due
        (a peer that left the map is forgotten: it gets the list when it comes back)."""
        due = self.revocations.due(now_ms)
        if due:
            self.enforce(now_ms, due)
        for peer, when in sorted(self._unsynced.items()):
            if when <= now_ms:
                del self._unsynced[peer]
                if peer in self._alive:
                    self._send_all(peer)

    def next_deadline(self) -> int | None:
        times = [t for t in (self.revocations.next_due(), *self._unsynced.values()) if t is not None]
        return min(times) if times else None

    async def run(self) -> None:
        """Call ``tick`` when a reauth margin ends or a retry is due; prune old records."""
        next_prune = self.now_ms() + PRUNE_EVERY_MS
        while True:
            deadline = min(next_prune, self.next_deadline() or next_prune)
            with trio.move_on_after(max(0, deadline - self.now_ms()) / 1000):
                await self._wake.wait()
            self._wake = trio.Event()
            now = self.now_ms()
            self.tick(now)
            if now >= next_prune:
                next_prune = now + PRUNE_EVERY_MS
                self.revocations.prune(now)

    # -- spreading ----------------------------------------------------------------

    def _serve(self, now_ms: int, src: str, args: dict[str, Any], reply: Callable[[bool, Any], None]) -> None:
        raw = args.get("records")
        try:
            if not isinstance(raw, list):
                raise ValueError("records must be a list")
            records = [Revocation.from_wire(r) for r in raw]
        except ValueError as exc:
            log.warning("peer.bad_revocations", peer=src, reason=str(exc))
            reply(False, O.Refused(O.Refusal.BAD_REQUEST, f"token_revoke: {exc}"))
            return
        added = self.merge(now_ms, records)
        if added:
            log.info("rest.revocations_merged", peer=src, added=len(added))
        reply(True, len(added))

    def _request(self, peer: str, records: list[Revocation], done: Callable[[bool], None]) -> None:
        bus = self.node.channels.bus
        if bus is None:
            done(False)
            return
        op = O.RestCall(kind="token_revoke", args={"records": [r.to_wire() for r in records]})
        bus.request(peer, op, lambda ok, _res: done(ok), SPREAD_TIMEOUT_S)

    def _missed(self, peer: str) -> None:
        if peer not in self._unsynced:
            log.warning("rest.revocations_unsynced", peer=peer, retry_ms=RETRY_MS)
            self._unsynced[peer] = self.now_ms() + RETRY_MS
            self._wake.set()  # run() recomputes its deadline

    async def _spread(self, records: list[Revocation]) -> None:
        """Send ``records`` to every live peer; wait for their acknowledgements (bounded)."""
        peers = sorted(self._alive)
        if not records or not peers:
            return
        waiting = len(peers)
        event = trio.Event()

        def answered(peer: str, ok: bool) -> None:
            nonlocal waiting
            if not ok:
                self._missed(peer)
            waiting -= 1
            if waiting == 0:
                event.set()

        for peer in peers:
            self._request(peer, records, partial(answered, peer))
        with trio.move_on_after(SPREAD_TIMEOUT_S + 0.5):
            await event.wait()

    def _send_all(self, peer: str) -> None:
        """The whole list to ``peer`` (in chunks); it stays unsynced until every chunk is taken."""
        records = list(self.revocations)
        self._unsynced.pop(peer, None)

        def taken(ok: bool) -> None:
            if not ok:
                self._missed(peer)

        for start in range(0, len(records), CHUNK):
            self._request(peer, records[start : start + CHUNK], taken)

    def _view_changed(self, now_ms: int, view: ClusterView) -> None:
        me = self.node.node_id
        alive = {p.node_id for p in view.frontends() if p.alive and p.node_id != me}
        came = alive - self._alive
        self._alive = alive
        if len(self.revocations):
            for peer in sorted(came):
                self._send_all(peer)
