"""REST presence: ``GET /channels/{channelId}/presence`` (RSP3), the members present now, and
``GET /channels/{channelId}/presence/history`` (RSP4), the presence events (``presence_history.py``).

Authenticated as Ably's REST is (``Authorization: Basic base64(key)`` or ``Bearer <token>``,
or ``?key=`` / ``?access_token=``), and allowed by the ``presence`` or ``subscribe``
capability (else 40160). The set is the one realtime attaches are sent: the channel's home
answers, from this frontend or over the peer links (an attach that does not subscribe).
Filters ``clientId`` and ``connectionId``; ``limit`` (default 100, at most 1000) pages the
members in a stable order with a ``Link: <./presence?...&cursor=N>; rel="next"`` header, as
the SDKs' paginated results follow. The body is JSON, or msgpack when the client accepts it.
History needs the ``history`` capability and pages as message history does (``limit``,
``direction``, ``start``, ``end``; ``Link`` rel first/current/next).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode

import msgpack
import structlog
import trio

from frontend.auth import AuthError, allows
from frontend.channels import AttachResult
from frontend.homes import OPERATION_DEADLINE_MS
from frontend.presence_history import PresenceHistory
from frontend.presence_set import PresenceSet
from frontend.pubsub import channel_name_problem
from frontend.rest.history import HistoryQuery
from frontend.rest.wire import RestError
from kernel.errors import ErrorCode, ErrorInfo
from kernel.protocol import to_json_wire

if TYPE_CHECKING:
    from frontend.node import FrontendNode

log = structlog.get_logger("continuity.frontend")

PREFIX = "/channels/"
SUFFIX = "/presence"
HISTORY_SUFFIX = "/presence/history"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MSGPACK = b"application/x-msgpack"

Response = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]


def handles(path: str) -> bool:
    return path.startswith(PREFIX) and any(
        path.endswith(end) and len(path) > len(PREFIX) + len(end) for end in (SUFFIX, HISTORY_SUFFIX)
    )


def _error(code: ErrorCode, message: str, node: FrontendNode) -> Response:
    info = ErrorInfo.of(code, message)
    node.metrics.errors_sent.labels(code=str(info.code)).inc()
    body = json.dumps({"error": info.to_wire()}).encode()
    extra = [(b"x-ably-errorcode", str(info.code).encode()), (b"x-ably-errormessage", message.encode())]
    return info.status_code, b"application/json", body, extra


def _credentials(headers: dict[bytes, bytes], query: dict[str, str]) -> tuple[str | None, str | None]:
    auth = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value, validate=True).decode("utf-8"), None
        except (binascii.Error, UnicodeDecodeError):
            return None, None
    if scheme.lower() == "bearer":
        token = value.strip()
        try:  # ably-js sends the token base64-encoded
            decoded = base64.b64decode(token, validate=True).decode("utf-8")
            if decoded.count(".") == 2:
                token = decoded
        except (binascii.Error, UnicodeDecodeError):
            pass
        return None, token
    return query.get("key"), query.get("access_token") or query.get("accessToken")


async def fetch_members(node: FrontendNode, now_ms: int, channel: str) -> PresenceSet | None:
    """The channel's members as its home has them (None when the home does not answer in time)."""
    answer: list[AttachResult] = []
    got = trio.Event()

    def done(res: AttachResult) -> None:
        answer.append(res)
        got.set()

    node.channels.attach(now_ms, channel, None, done, subscribe=False)
    node.wake()
    with trio.move_on_after(OPERATION_DEADLINE_MS / 1000 + 1):
        await got.wait()
    if not answer or answer[0].error is not None:
        return None
    return PresenceSet.from_wire(answer[0].presence)


def member_wire(member: dict[str, Any]) -> dict[str, Any]:
    """A member as REST answers it: a PresenceMessage with action PRESENT (1)."""
    return {**member, "action": 1}


async def serve(
    node: FrontendNode,
    method: bytes,
    headers: Iterable[tuple[bytes, bytes]],
    target: SplitResult,
    now_ms: int,
    *,
    history: PresenceHistory | None = None,
) -> Response:
    """Answer one REST presence request (never raises for bad input); ``history`` serves
    ``/presence/history`` (404 without it)."""
    if method != b"GET":
        return _error(ErrorCode.METHOD_NOT_ALLOWED, "presence is read with GET", node)
    hdrs = {k.lower(): v for k, v in headers}
    query = dict(parse_qsl(target.query))
    is_history = target.path.endswith(HISTORY_SUFFIX)
    if is_history and history is None:
        return _error(ErrorCode.NOT_FOUND, f"no such path: {target.path}", node)
    channel = unquote(target.path[len(PREFIX) : -len(HISTORY_SUFFIX if is_history else SUFFIX)])
    problem = channel_name_problem(channel)
    if problem is not None:
        return _error(ErrorCode.INVALID_CHANNEL_NAME, problem, node)
    key, token = _credentials(hdrs, query)
    if key is None and token is None:
        return _error(ErrorCode.UNAUTHORIZED, "authentication required (key or token)", node)
    try:
        ident = node.auth.authenticate(now_ms, key=key, token=token, client_id=None)
    except AuthError as exc:
        node.metrics.auth_failures.labels(code=str(int(exc.code))).inc()
        return _error(exc.code, str(exc), node)
    if history is not None and is_history:
        if not allows(ident.capability, channel, "history"):
            return _error(
                ErrorCode.CAPABILITY_DENIED, f"permission denied to read the history of {channel}", node
            )
        return await _history(node, history, channel, query, hdrs)
    if not (allows(ident.capability, channel, "presence") or allows(ident.capability, channel, "subscribe")):
        return _error(
            ErrorCode.CAPABILITY_DENIED, f"channel denied access based on capability: {channel}", node
        )
    try:
        limit = int(query.get("limit", DEFAULT_LIMIT))
        start = int(query.get("cursor", 0))
    except ValueError:
        return _error(ErrorCode.BAD_REQUEST, "limit and cursor must be integers", node)
    if not 1 <= limit <= MAX_LIMIT or start < 0:
        return _error(ErrorCode.BAD_REQUEST, f"limit must be 1..{MAX_LIMIT} and cursor at least 0", node)

    present = await fetch_members(node, now_ms, channel)
    if present is None:
        return _error(ErrorCode.INTERNAL_CHANNEL, f"channel {channel} is unavailable", node)
    members = present.query(client_id=query.get("clientId"), connection_id=query.get("connectionId"))
    members.sort(key=lambda m: (str(m.get("clientId")), str(m.get("connectionId"))))
    page = members[start : start + limit]
    extra: list[tuple[bytes, bytes]] = []
    if start + limit < len(members):
        nxt = {**query, "limit": str(limit), "cursor": str(start + limit)}
        extra.append((b"link", f'<./presence?{urlencode(nxt)}>; rel="next"'.encode()))
    return _body([{**m, "action": 1} for m in page], hdrs, extra)


def _body(body: list[Any], hdrs: dict[bytes, bytes], extra: list[tuple[bytes, bytes]]) -> Response:
    if MSGPACK in hdrs.get(b"accept", b""):
        return 200, MSGPACK, msgpack.packb(body, use_bin_type=True), extra
    return 200, b"application/json", json.dumps(to_json_wire({"presence": body})["presence"]).encode(), extra


async def _history(
    node: FrontendNode,
    history: PresenceHistory,
    channel: str,
    params: dict[str, str],
    hdrs: dict[bytes, bytes],
) -> Response:
    try:
        query = HistoryQuery.from_params(params)
        page = await history.read(channel, query)
    except RestError as exc:
        return _error(exc.code, str(exc), node)

    def link(cursor: str | None, rel: str) -> str:
        return f'<./history?{urlencode(query.to_params(cursor=cursor), quote_via=quote)}>; rel="{rel}"'

    links = [link(None, "first"), link(query.cursor, "current")]
    if page.next_cursor is not None:
        links.append(link(page.next_cursor, "next"))
    return _body(page.messages, hdrs, [(b"link", ", ".join(links).encode())])
