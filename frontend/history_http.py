"""``GET /channels/{id}/messages``: channel history over HTTP, as Ably's REST API pages it.

A minimal endpoint, in its own module until the REST layer serves this route: it authenticates
(``Authorization: Basic <key>`` or ``Bearer <token>``, anything in dev mode), needs the
``history`` capability on the channel, and answers one page of ``frontend.history``: persisted
channels from the store, others from the log this frontend is home of (a memory-only channel
homed on another frontend is refused with 50001: the REST layer reads it over the peer link).

Query: ``limit`` (1..1000, default 100), ``direction`` (backwards|forwards), ``start``/``end``
(ms, inclusive), ``fromSerial`` (continue beyond this serial: the Link ``next`` of a page) and
``from_serial`` (ably-js ``untilAttach``: the attach point, RTL10b). The body is a JSON array of
messages, or msgpack when the client asks for it (``Accept: application/x-msgpack`` or
``format=msgpack``), with ``Link`` headers ``first``, ``current`` and, when there is more,
``next``. Errors are Ably ErrorInfo bodies with ``X-Ably-Errorcode``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import h11
import msgpack
import structlog
import trio

from frontend.auth import AuthError, allows
from frontend.channel_log import parse_serial
from frontend.history import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    StoredPage,
    read_memory,
    read_stored,
    until_attach_cursor,
)
from frontend.websocket import wall_ms
from kernel.errors import ErrorCode, ErrorInfo
from kernel.protocol import to_json_wire

if TYPE_CHECKING:
    from frontend.node import FrontendNode

log = structlog.get_logger("continuity.frontend")

HISTORY_PATH = re.compile(r"^/channels/([^/]+)/messages$")
Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]
READ_TIMEOUT_S = 15.0


class HistoryError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.info = ErrorInfo.of(code, message)


def history_channel(method: bytes, path: str) -> str | None:
    """The channel a ``GET /channels/{id}/messages`` names, else None."""
    m = HISTORY_PATH.match(path) if method == b"GET" else None
    return unquote(m.group(1)) if m else None


async def serve_history(node: FrontendNode, req: h11.Request, channel: str) -> Answer:
    target = urlsplit(req.target.decode("latin-1"))
    params = dict(parse_qsl(target.query, keep_blank_values=True))
    msgpack_wanted = params.get("format") == "msgpack" or b"msgpack" in _header(req, b"accept")
    try:
        _authorize(node, req, channel)
        query = _query(params)
        with trio.fail_after(READ_TIMEOUT_S):
            page = await _read(node, channel, query)
    except HistoryError as exc:
        return _error(node, exc.info)
    except trio.TooSlowError:
        return _error(node, ErrorInfo.of(ErrorCode.INTERNAL_CHANNEL, f"history of {channel} timed out"))
    except Exception as exc:  # the store failed: answered, logged and counted, never fatal
        log.warning("history.read_failed", channel=channel, error=repr(exc))
        node.metrics.history_store_errors.labels(op="page").inc()
        return _error(node, ErrorInfo.of(ErrorCode.INTERNAL_CHANNEL, f"history of {channel} is unavailable"))
    if msgpack_wanted:
        body, ctype = msgpack.packb(page.messages, use_bin_type=True), b"application/x-msgpack"
    else:
        wire = to_json_wire({"messages": page.messages})["messages"]
        body, ctype = json.dumps(wire, separators=(",", ":")).encode(), b"application/json"
    return 200, ctype, body, [(b"link", _links(query, page).encode())]


def _header(req: h11.Request, name: bytes) -> bytes:
    for k, v in req.headers:
        if k == name:
            return bytes(v)
    return b""


def _authorize(node: FrontendNode, req: h11.Request, channel: str) -> None:
    auth = _header(req, b"authorization").decode("latin-1")
    kind, _, cred = auth.partition(" ")
    key = token = None
    if kind.lower() == "basic":
        try:
            key = base64.b64decode(cred, validate=True).decode()
        except ValueError:
            raise HistoryError(ErrorCode.INVALID_CREDENTIALS, "malformed Basic credentials") from None
    elif kind.lower() == "bearer":
        token = cred.strip()
        if token and "." not in token:  # ably-js sends a JWT base64-encoded in the header
            try:
                token = base64.b64decode(token, validate=True).decode()
            except ValueError:
                pass
    try:
        ident = node.auth.authenticate(wall_ms(), key=key, token=token, client_id=None)
    except AuthError as exc:
        node.metrics.auth_failures.labels(code=str(int(exc.code))).inc()
        raise HistoryError(exc.code, str(exc)) from None
    if not allows(ident.capability, channel, "history"):
        raise HistoryError(ErrorCode.CAPABILITY_DENIED, f"permission denied to read the history of {channel}")


def _query(params: Mapping[str, str]) -> dict[str, object]:
    def number(name: str) -> int | None:
        raw = params.get(name)
        if raw in (None, ""):
            return None
        try:
            return int(str(raw))
        except ValueError:
            raise HistoryError(ErrorCode.BAD_REQUEST, f"{name} must be an integer") from None

    limit = number("limit")
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise HistoryError(ErrorCode.BAD_REQUEST, f"limit must be 1..{MAX_LIMIT}")
    direction = params.get("direction") or "backwards"
    if direction not in ("backwards", "forwards"):
        raise HistoryError(ErrorCode.BAD_REQUEST, "direction must be backwards or forwards")
    start, end = number("start"), number("end")
    if start is not None and end is not None and start > end:
        raise HistoryError(ErrorCode.BAD_REQUEST, "start must not be after end")
    cursor = params.get("fromSerial") or None
    until = params.get("from_serial") or None
    if cursor is None and until is not None:
        if direction != "backwards":
            raise HistoryError(ErrorCode.BAD_REQUEST, "untilAttach (from_serial) pages backwards only")
        cursor = until_attach_cursor(until)
    if cursor is not None and parse_serial(cursor) is None:
        raise HistoryError(ErrorCode.BAD_REQUEST, "fromSerial/from_serial is not a serial")
    return {
        "limit": limit,
        "backwards": direction == "backwards",
        "start": start,
        "end": end,
        "cursor": cursor,
    }


async def _read(node: FrontendNode, channel: str, q: dict[str, object]) -> StoredPage:
    kw = {k: q[k] for k in ("limit", "backwards", "start", "end", "cursor")}
    persistence = node.persistence
    if persistence is not None and node.config.persist_rule(channel) is not None:
        return await read_stored(persistence.store, channel, **kw)  # type: ignore[arg-type]
    channels = node.channels
    if channels.home_of(channel) != node.node_id:
        raise HistoryError(
            ErrorCode.INTERNAL_CHANNEL,
            f"{channel} is homed on another frontend and kept in memory only: its history is read there",
        )
    ready = trio.Event()
    answer: list[StoredPage] = []

    def then(ok: bool) -> None:
        home = channels.homes.get(channel) if ok else None
        if home is not None:
            committed = [e for e in home.log.entries() if e.last_seq <= home.committed]
            answer.append(read_memory(channel, home.log.epoch, committed, **kw))  # type: ignore[arg-type]
        ready.set()

    channels._with_home(wall_ms(), channel, then)
    await ready.wait()
    if not answer:
        raise HistoryError(ErrorCode.INTERNAL_CHANNEL, f"history of {channel} is unavailable: no home")
    return answer[0]


def _links(q: dict[str, object], page: StoredPage) -> str:
    def link(cursor: object, rel: str) -> str:
        out = {"limit": str(q["limit"]), "direction": "backwards" if q["backwards"] else "forwards"}
        for name in ("start", "end"):
            if q[name] is not None:
                out[name] = str(q[name])
        if cursor is not None:
            out["fromSerial"] = str(cursor)
        return f'<./messages?{urlencode(out, quote_via=quote)}>; rel="{rel}"'

    links = [link(None, "first"), link(q["cursor"], "current")]
    if page.next_cursor is not None:
        links.append(link(page.next_cursor, "next"))
    return ", ".join(links)


def _error(node: FrontendNode, info: ErrorInfo) -> Answer:
    node.metrics.errors_sent.labels(code=str(info.code)).inc()
    body = json.dumps({"error": info.to_wire()}).encode()
    return info.status_code, b"application/json", body, [(b"x-ably-errorcode", str(info.code).encode())]
