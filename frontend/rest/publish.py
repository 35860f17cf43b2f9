"""REST publish: ``POST /channels/{id}/messages`` and the batch ``POST /messages``.

Theory of operation
-------------------
A REST publish is checked here (shape, capability, clientId, size: 40001, 40160, 40012,
40009), stamped (id, clientId, timestamp) and handed to the channel's home through the same
``ChannelService.publish`` a realtime MESSAGE takes: the home numbers it, the replica holds
it, then it is fanned out to every subscriber on every frontend once, in order, and the
serials come back. Messages without ids get ``<base>:<index>`` ids (so a retried request is
deduplicated like an SDK's idempotent publish); messages that carry ids are deduplicated at
the home for two minutes (``frontend.idempotency``).

The publisher of a REST publish is a fresh ``rest:<base>`` name (nobody's echo), with a
random negative msgSerial so that it never meets a realtime ``(connectionId, msgSerial)``
dedupe record. A message that carries ``connectionKey`` is published *on behalf of* that
realtime connection (its connectionId, its echo rule, its clientId): it is done by the
connection's owner, here or on another frontend over the peer link (op ``rest_publish``).
"""

from __future__ import annotations

import base64
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from frontend import peerops as O
from frontend.auth import Identity, allows
from frontend.homes import OPERATION_DEADLINE_MS
from frontend.idempotency import atomic_base
from frontend.pubsub import MAX_CHANNEL_NAME, _payload_size
from frontend.rest.wire import RestError
from kernel.errors import ErrorCode, ErrorInfo
from kernel.keys import InvalidKey
from kernel.protocol import Action

if TYPE_CHECKING:
    from frontend.node import FrontendNode

_FIELDS = {"name": str, "id": str, "clientId": str, "encoding": str, "extras": dict, "connectionKey": str}
MAX_MESSAGES_PER_PUBLISH = 1000
MAX_BATCH_SPECS = 100
# How long a REST publish waits for its serials: the home retries within the deadline, and an
# attempt whose outcome is unknown goes on (deduplicated) a little longer.
WAIT_S = OPERATION_DEADLINE_MS / 1000 + 10


@dataclass(frozen=True, slots=True)
class Published:
    channel: str
    message_id: str
    serials: list[str]

    def to_wire(self) -> dict[str, Any]:
        return {"channel": self.channel, "messageId": self.message_id, "serials": self.serials}


def check_channel(name: str) -> str:
    if not name or len(name) > MAX_CHANNEL_NAME:
        raise RestError(ErrorCode.INVALID_PARAMETER, "a channel name has 1..1024 characters")
    return name


def parse_messages(body: Any) -> list[dict[str, Any]]:
    """One message or an array of them, each with fields of the right type; RestError 40001."""
    raw = [body] if isinstance(body, dict) else body
    if not isinstance(raw, list) or not raw:
        raise RestError(ErrorCode.INVALID_BODY, "the body must be a message or a non-empty array of messages")
    if len(raw) > MAX_MESSAGES_PER_PUBLISH:
        raise RestError(ErrorCode.INVALID_BODY, f"at most {MAX_MESSAGES_PER_PUBLISH} messages per publish")
    out = []
    for m in raw:
        if not isinstance(m, dict):
            raise RestError(ErrorCode.INVALID_BODY, "each message must be an object")
        for key, kind in _FIELDS.items():
            if m.get(key) is not None and not isinstance(m[key], kind):
                raise RestError(ErrorCode.INVALID_BODY, f"message field {key} must be a {kind.__name__}")
        out.append({k: v for k, v in m.items() if v is not None and isinstance(k, str)})
    return out


def check_publish(node: FrontendNode, ident: Identity, channel: str, messages: list[dict[str, Any]]) -> None:
    """Capability, clientId and size checks of a REST caller's publish."""
    if not allows(ident.capability, channel, "publish"):
        raise RestError(ErrorCode.CAPABILITY_DENIED, f"permission denied to publish on {channel}")
    for m in messages:
        cid = m.get("clientId")
        if cid == "*":
            raise RestError(ErrorCode.INVALID_CLIENT_ID, "clientId '*' may not be published")
        if cid is not None and not may_publish_as(ident, cid):
            raise RestError(
                ErrorCode.INVALID_CLIENT_ID,
                f"message clientId {cid!r} does not match the credentials' clientId",
            )
    size = sum(_payload_size(m) for m in messages)
    if size > node.config.max_message_size:
        raise RestError(
            ErrorCode.MAX_MESSAGE_SIZE_EXCEEDED,
            f"message size {size} exceeds the maximum of {node.config.max_message_size}",
        )


def may_publish_as(ident: Identity, client_id: str) -> bool:
    """RSA7/RSL1m: a token or key bound to a clientId may only publish as it ('*': as anyone); an
    unbound key may name any clientId; an unbound token none."""
    if ident.client_id in ("*", client_id):
        return True
    return ident.client_id is None and ident.expires_ms is None


def stamp(
    now_ms: int, ident_client_id: str | None, messages: list[dict[str, Any]]
) -> tuple[str, list[dict[str, Any]]]:
    """``(messageId, stamped)``: ids ``<base>:<i>`` where all are absent, clientId, timestamp."""
    ids = [m.get("id") for m in messages]
    if all(i is None for i in ids):
        base = base64.urlsafe_b64encode(os.urandom(12)).decode().rstrip("=")
        ids = [f"{base}:{i}" for i in range(len(messages))]
    else:
        base = atomic_base(ids) or str(ids[0] or "")
    stamped = []
    for m, mid in zip(messages, ids, strict=True):
        out = {k: v for k, v in m.items() if k != "connectionKey"}
        if mid is not None:
            out["id"] = mid
        if "clientId" not in out and ident_client_id not in (None, "*"):
            out["clientId"] = ident_client_id
        out.setdefault("timestamp", now_ms)
        stamped.append(out)
    return base, stamped


def known_code(code: int, default: ErrorCode) -> ErrorCode:
    """``code`` as one of our ErrorCodes (a peer's NACK carries one), else ``default``."""
    try:
        return ErrorCode(code)
    except ValueError:
        return default


async def wait_for(
    start: Callable[[Callable[[list[str] | None, ErrorInfo | None], None]], None],
) -> list[str]:
    """Run a callback-style publish and wait for its serials; RestError on a NACK or timeout."""
    done_event = trio.Event()
    result: list[Any] = [None, None]

    def done(serials: list[str] | None, error: ErrorInfo | None) -> None:
        if not done_event.is_set():
            result[0], result[1] = serials, error
            done_event.set()

    start(done)
    with trio.move_on_after(WAIT_S):
        await done_event.wait()
    serials, error = result
    if serials is not None:
        return list(serials)
    if error is not None:
        raise RestError(known_code(error.code, ErrorCode.INTERNAL_CHANNEL), error.message)
    raise RestError(ErrorCode.INTERNAL_CHANNEL, "publish timed out: the channel's home did not answer")


class RestPublisher:
    """Publishes for REST callers through the node's channel service."""

    def __init__(self, node: FrontendNode, now_ms: Callable[[], int]) -> None:
        self.node = node
        self.now_ms = now_ms
        node.peer_ops["rest_publish"] = self._serve_on_behalf

    async def publish(self, ident: Identity, channel: str, body_messages: list[dict[str, Any]]) -> Published:
        check_channel(channel)
        check_publish(self.node, ident, channel, body_messages)
        conn_keys = {m.get("connectionKey") for m in body_messages} - {None}
        if len(conn_keys) > 1:
            raise RestError(
                ErrorCode.INVALID_BODY, "the messages of one publish name different connectionKeys"
            )
        if conn_keys:
            return await self._on_behalf(ident, channel, str(conn_keys.pop()), body_messages)
        now = self.now_ms()
        base, stamped = stamp(now, ident.client_id, body_messages)
        publisher = f"rest:{base}"[:200]
        msg_serial = -random.getrandbits(62) - 1
        envelope = {"action": int(Action.MESSAGE), "channel": channel, "id": base, "timestamp": now}
        pub = O.Publish(
            channel=channel,
            connection_id=publisher,
            msg_serial=msg_serial,
            messages=stamped,
            envelope=envelope,
        )
        self.node.wake()  # the publish below is fed in this same step
        serials = await wait_for(lambda done: self.node.channels.publish(now, pub, done))
        return Published(channel, base, serials)

    # -- publish on behalf of a realtime connection -------------------------

    async def _on_behalf(
        self, ident: Identity, channel: str, conn_key: str, messages: list[dict[str, Any]]
    ) -> Published:
        try:
            key = self.node.signer.verify(conn_key)
        except InvalidKey:
            raise RestError(ErrorCode.PUBLISH_ON_BEHALF_FAILED, "connectionKey is not valid") from None
        args = {"channel": channel, "key": conn_key, "messages": messages, "client_id": ident.client_id}
        if key.owner == self.node.node_id or self.node.channels.bus is None:
            answer: list[Any] = []
            event = trio.Event()

            def reply(ok: bool, res: Any) -> None:
                answer.append((ok, res))
                event.set()

            self._serve_on_behalf(self.now_ms(), self.node.node_id, args, reply)
            self.node.wake()
            with trio.move_on_after(WAIT_S):
                await event.wait()
        else:
            answer, event = [], trio.Event()

            def on_reply(ok: bool, res: Any) -> None:
                answer.append((ok, res))
                event.set()

            self.node.channels.bus.request(
                key.owner, O.RestCall(kind="rest_publish", args=args), on_reply, WAIT_S
            )
            with trio.move_on_after(WAIT_S + 1):
                await event.wait()
        if not answer:
            raise RestError(ErrorCode.INTERNAL_CHANNEL, "publish on behalf timed out")
        ok, res = answer[0]
        if ok and isinstance(res, dict) and "serials" in res:
            return Published(channel, str(res.get("messageId", "")), [str(s) for s in res["serials"]])
        err = ErrorInfo.from_wire(res.get("error")) if ok and isinstance(res, dict) else None
        if err is not None:
            raise RestError(known_code(err.code, ErrorCode.PUBLISH_ON_BEHALF_FAILED), err.message)
        raise RestError(ErrorCode.PUBLISH_ON_BEHALF_FAILED, f"publish on behalf failed: {res}")

    def _serve_on_behalf(
        self, now_ms: int, src: str, args: Mapping[str, Any], reply: Callable[[bool, Any], None]
    ) -> None:
        """At the connection's owner: publish ``messages`` as that connection; reply serials or error."""
        node = self.node

        def fail(code: ErrorCode, msg: str) -> None:
            reply(True, {"error": ErrorInfo.of(code, msg).to_wire()})

        try:
            key = node.signer.verify(str(args.get("key")))
        except InvalidKey:
            fail(ErrorCode.PUBLISH_ON_BEHALF_FAILED, "connectionKey is not valid")
            return
        s = node.sessions.get(key.connection_id)
        if s is None or s.terminal or s.epoch != key.epoch:
            fail(ErrorCode.PUBLISH_ON_BEHALF_FAILED, "connectionKey names no live connection on its owner")
            return
        channel = str(args.get("channel"))
        if not allows(s.identity.capability, channel, "publish"):
            fail(ErrorCode.CAPABILITY_DENIED, f"the connection may not publish on {channel}")
            return
        messages = [dict(m) for m in args.get("messages") or [] if isinstance(m, dict)]
        for m in messages:
            if not s.may_publish_as(m.get("clientId")):
                fail(ErrorCode.INVALID_CLIENT_ID, "message clientId does not match the connection's")
                return
        now = node.channels.now_ms or now_ms
        base, stamped = stamp(now, s.client_id, messages)
        for m in stamped:
            m["connectionId"] = s.connection_id
        envelope = {
            "action": int(Action.MESSAGE),
            "channel": channel,
            "id": base,
            "connectionId": s.connection_id,
            "timestamp": now,
        }

        def done(serials: list[str] | None, error: ErrorInfo | None) -> None:
            if serials is not None:
                reply(True, {"serials": serials, "messageId": base})
            else:
                reply(
                    True,
                    {"error": (error or ErrorInfo.of(ErrorCode.INTERNAL_CHANNEL, "not published")).to_wire()},
                )

        pub = O.Publish(
            channel=channel,
            connection_id=s.connection_id,
            msg_serial=-random.getrandbits(62) - 1,  # never one of the connection's own msgSerials
            messages=stamped,
            envelope=envelope,
        )
        node.channels.publish(now, pub, done)
