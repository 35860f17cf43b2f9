"""The Ably realtime ProtocolMessage: actions, flags, and a JSON/msgpack codec.

Pure: no I/O, no clock. ``decode`` raises only :class:`RemoteProtocolError`
(answer ERROR 40000 and close the transport). ``encode`` never fails on a
message built by this code base.

The field names and numbers are the protocol (PROTOCOL.md section 2); the
enums are append-only.
"""

from __future__ import annotations

import base64
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

try:  # a declared dependency; the stdlib's json serves where it is not installed
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

from kernel.errors import ErrorCode, ErrorInfo, RemoteProtocolError

Format = Literal["json", "msgpack"]
FORMATS: tuple[Format, ...] = ("json", "msgpack")

# Protocol versions we serve (PROTOCOL.md section 0). We always emit v6 shapes,
# which every 2.x client and ably-python 3.x read.
MIN_PROTOCOL_VERSION = 2
MAX_PROTOCOL_VERSION = 6


class Action(enum.IntEnum):
    """ProtocolMessage actions (TR2). The numbers are the protocol: append only."""

    HEARTBEAT = 0
    ACK = 1
    NACK = 2
    CONNECT = 3
    CONNECTED = 4
    DISCONNECT = 5
    DISCONNECTED = 6
    CLOSE = 7
    CLOSED = 8
    ERROR = 9
    ATTACH = 10
    ATTACHED = 11
    DETACH = 12
    DETACHED = 13
    PRESENCE = 14
    MESSAGE = 15
    SYNC = 16
    AUTH = 17
    ACTIVATE = 18
    OBJECT = 19
    OBJECT_SYNC = 20
    ANNOTATION = 21


class Flag(enum.IntFlag):
    """ProtocolMessage flags (TR3). Bit positions are the protocol."""

    HAS_PRESENCE = 1 << 0
    HAS_BACKLOG = 1 << 1
    RESUMED = 1 << 2
    TRANSIENT = 1 << 4
    ATTACH_RESUME = 1 << 5
    HAS_OBJECTS = 1 << 7
    PRESENCE = 1 << 16
    PUBLISH = 1 << 17
    SUBSCRIBE = 1 << 18
    PRESENCE_SUBSCRIBE = 1 << 19
    ANNOTATION_PUBLISH = 1 << 21
    ANNOTATION_SUBSCRIBE = 1 << 22
    OBJECT_SUBSCRIBE = 1 << 24
    OBJECT_PUBLISH = 1 << 25


MODE_FLAGS = (
    Flag.PRESENCE
    | Flag.PUBLISH
    | Flag.SUBSCRIBE
    | Flag.PRESENCE_SUBSCRIBE
    | Flag.ANNOTATION_PUBLISH
    | Flag.ANNOTATION_SUBSCRIBE
    | Flag.OBJECT_SUBSCRIBE
    | Flag.OBJECT_PUBLISH
)
DEFAULT_MODES = Flag.PUBLISH | Flag.SUBSCRIBE | Flag.PRESENCE | Flag.PRESENCE_SUBSCRIBE

# Actions the client expects an ACK or NACK for (RTN7a).
ACKED_ACTIONS = frozenset({Action.MESSAGE, Action.PRESENCE, Action.ANNOTATION, Action.OBJECT})

# A Message (TM2) travels as a plain mapping: its data and encoding are opaque
# to the server, and unknown fields must survive a round trip.
Message = dict[str, Any]

_MESSAGE_STR_FIELDS = ("id", "name", "encoding", "clientId", "connectionId", "connectionKey", "serial")


@dataclass(slots=True, kw_only=True)
class ProtocolMessage:
    """One ProtocolMessage (TR4). Absent and null are the same (PROTOCOL.md 2.2)."""

    action: Action
    flags: int = 0
    id: str | None = None
    timestamp: int | None = None
    count: int | None = None
    error: ErrorInfo | None = None
    connection_id: str | None = None
    channel: str | None = None
    channel_serial: str | None = None
    msg_serial: int | None = None
    messages: list[Message] | None = None
    presence: list[Message] | None = None
    connection_details: dict[str, Any] | None = None
    params: dict[str, str] | None = None
    res: list[dict[str, Any]] | None = None
    auth: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Inbound only: why the frame is invalid in its channel's scope (params not string -> string).
    # The frame's channel is refused (ERROR with ``channel``); the connection and its other channels
    # live (RTL14). Never serialised.
    channel_problem: str | None = None

    def has(self, flag: Flag) -> bool:
        return bool(self.flags & flag)

    def to_wire(self) -> dict[str, Any]:
        """Return the wire mapping, omitting absent fields."""
        out: dict[str, Any] = {"action": int(self.action)}
        if self.flags:
            out["flags"] = int(self.flags)
        for attr, key in _OPTIONAL_FIELDS:
            value = getattr(self, attr)
            if value is not None:
                out[key] = value
        if self.error is not None:
            out["error"] = self.error.to_wire()
        return out


_OPTIONAL_FIELDS = (
    ("id", "id"),
    ("timestamp", "timestamp"),
    ("count", "count"),
    ("connection_id", "connectionId"),
    ("channel", "channel"),
    ("channel_serial", "channelSerial"),
    ("msg_serial", "msgSerial"),
    ("messages", "messages"),
    ("presence", "presence"),
    ("connection_details", "connectionDetails"),
    ("params", "params"),
    ("res", "res"),
    ("auth", "auth"),
)


# ---------------------------------------------------------------------------
# Decoding


def _bad(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, ErrorCode.BAD_REQUEST)


_MAX_PROTOCOL_INT = (1 << 53) - 1  # what a JavaScript client can represent exactly


def _opt(raw: dict[str, Any], key: str, kind: type) -> Any:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _bad(f"field {key!r} has the wrong type")
    if isinstance(value, int) and not 0 <= value <= _MAX_PROTOCOL_INT:
        raise _bad(f"field {key!r} is out of range")
    return value


def _messages(raw: dict[str, Any], key: str) -> list[Message] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _bad(f"field {key!r} must be an array")
    for item in value:
        if not isinstance(item, dict):
            raise _bad(f"every entry of {key!r} must be an object")
        for name in _MESSAGE_STR_FIELDS:
            v = item.get(name)
            if v is not None and not isinstance(v, str):
                raise _bad(f"message field {name!r} must be a string")
        extras = item.get("extras")
        if extras is not None and not isinstance(extras, dict):
            raise _bad("message field 'extras' must be an object")
    return value


def _params(raw: object) -> tuple[dict[str, str] | None, str | None]:
    """Channel params as strings, or why they are refused. Numbers and booleans are taken as their
    text (SDKs send ``{rewind: 1}``, which Ably accepts); objects, arrays and nulls are refused."""
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        return None, "channel params must be an object of strings"
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not isinstance(k, str):
            return None, "channel params must map strings to strings"
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif isinstance(v, (str, int)):
            out[k] = str(v)
        elif isinstance(v, float) and v.is_integer():
            out[k] = str(int(v))
        else:
            return None, f"channel param {k!r} must be a string"
    return out, None


def from_wire(raw: object) -> ProtocolMessage:
    """Build a ProtocolMessage from a decoded mapping.

    Raises RemoteProtocolError when the shape is not a ProtocolMessage.
    """
    if not isinstance(raw, dict):
        raise _bad("a ProtocolMessage must be an object")
    action = raw.get("action")
    if isinstance(action, bool) or not isinstance(action, int):
        raise _bad("ProtocolMessage.action must be an integer")
    try:
        act = Action(action)
    except ValueError:
        raise _bad(f"unknown action {action}") from None
    params, channel_problem = _params(raw.get("params"))
    if channel_problem is not None and not isinstance(raw.get("channel"), str):
        raise _bad(channel_problem)
    error = raw.get("error")
    return ProtocolMessage(
        action=act,
        flags=_opt(raw, "flags", int) or 0,
        id=_opt(raw, "id", str),
        timestamp=_opt(raw, "timestamp", int),
        count=_opt(raw, "count", int),
        error=ErrorInfo.from_wire(error) if error is not None else None,
        connection_id=_opt(raw, "connectionId", str),
        channel=_opt(raw, "channel", str),
        channel_serial=_opt(raw, "channelSerial", str),
        msg_serial=_opt(raw, "msgSerial", int),
        messages=_messages(raw, "messages"),
        presence=_messages(raw, "presence"),
        connection_details=_opt(raw, "connectionDetails", dict),
        params=params,
        res=_opt(raw, "res", list),
        auth=_opt(raw, "auth", dict),
        channel_problem=channel_problem,
    )


# Integers outside 64 bits cannot travel as msgpack, and NaN/Infinity are not
# JSON: refuse them at the door rather than fail later while fanning out.
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1


def _parse_int(text: str) -> int:
    value = int(text)
    if not _INT_MIN <= value <= _INT_MAX:
        raise ValueError("integer out of 64-bit range")
    return value


def _parse_constant(text: str) -> float:
    raise ValueError(f"{text} is not JSON")


# One decoder for every frame: ``json.loads`` with hooks builds a new JSONDecoder (an object,
# its dict and a C scanner) per call.
_json_decoder = json.JSONDecoder(parse_int=_parse_int, parse_constant=_parse_constant)


# A run of 20 digits may be an integer beyond 64 bits, which orjson would turn into a float.
_LONG_DIGITS = re.compile(r"[0-9]{20}")
_LONG_DIGITS_BYTES = re.compile(rb"[0-9]{20}")


def _json_loads(data: bytes | str) -> Any:
    """Parse JSON text: orjson (about 5x the stdlib's speed) when it can answer exactly as the
    stdlib decoder with our hooks would; the stdlib for the rest (a possibly out-of-range integer,
    and whatever orjson refuses, so that e.g. an escaped lone surrogate is treated as before)."""
    if not isinstance(data, str):
        data = bytes(data)
    if orjson is not None:
        long_digits = _LONG_DIGITS.search(data) if isinstance(data, str) else _LONG_DIGITS_BYTES.search(data)
        if long_digits is None:
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                pass
    if not isinstance(data, str):  # as json.loads does: RFC 8259 text, UTF-8 (or -16/-32 with a BOM)
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    return _json_decoder.decode(data)


def decode(data: bytes | str, fmt: Format, *, max_size: int) -> ProtocolMessage:
    """Decode one frame. Raises RemoteProtocolError on anything malformed."""
    if len(data) > max_size:
        raise RemoteProtocolError(f"frame of {len(data)} bytes exceeds {max_size}", ErrorCode.BAD_REQUEST)
    try:
        if fmt == "json":
            raw = _json_loads(data)
        else:
            if isinstance(data, str):
                raise _bad("msgpack frames must be binary")
            raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except RemoteProtocolError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise _bad(f"malformed {fmt} frame: {type(exc).__name__}") from None
    return from_wire(raw)


def decode_json_array(data: bytes, *, max_size: int) -> list[ProtocolMessage]:
    """Decode a Comet body: a JSON array of ProtocolMessages."""
    if len(data) > max_size:
        raise RemoteProtocolError(f"body of {len(data)} bytes exceeds {max_size}")
    try:
        raw = _json_loads(data)
    except (ValueError, RecursionError) as exc:
        raise _bad(f"malformed JSON body: {type(exc).__name__}") from None
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise _bad("body must be an array of ProtocolMessages")
    return [from_wire(item) for item in raw]


# ---------------------------------------------------------------------------
# Encoding

_json_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def _json_dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON: orjson (about 4.5x the stdlib's speed, the same text for what we send),
    or the stdlib encoder for what orjson refuses (an integer beyond 64 bits, say)."""
    if orjson is not None:
        try:
            return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            pass
    return _json_encoder.encode(obj).encode("utf-8")


def _json_safe_messages(messages: list[Message]) -> list[Message] | None:
    """Base64 binary data for JSON readers, appending ``/base64`` to encoding (RSL4d); None when
    no message carries binary data (the common case: the list is used as it is, not copied)."""
    out: list[Message] | None = None
    for i, m in enumerate(messages):
        data = m.get("data")
        if isinstance(data, (bytes, bytearray)):
            if out is None:
                out = list(messages[:i])
            m = dict(m)
            m["data"] = base64.b64encode(data).decode("ascii")
            enc = m.get("encoding")
            m["encoding"] = f"{enc}/base64" if enc else "base64"
        if out is not None:
            out.append(m)
    return out


def to_json_wire(wire: dict[str, Any]) -> dict[str, Any]:
    for key in ("messages", "presence"):
        if key in wire and (safe := _json_safe_messages(wire[key])) is not None:
            wire = dict(wire)
            wire[key] = safe
    return wire


def encode_wire(wire: dict[str, Any], fmt: Format) -> bytes:
    """Encode a wire mapping. JSON returns UTF-8 bytes for a text frame."""
    if fmt == "json":
        return _json_dumps(to_json_wire(wire))
    return msgpack.packb(wire, use_bin_type=True)


def encode(msg: ProtocolMessage, fmt: Format) -> bytes:
    return encode_wire(msg.to_wire(), fmt)


def encode_json_array(msgs: list[ProtocolMessage]) -> bytes:
    """A Comet body: a JSON array of ProtocolMessages followed by a newline."""
    items = [to_json_wire(m.to_wire()) for m in msgs]
    return _json_dumps(items) + b"\n"


class Encoded:
    """A server->client message encoded at most once per wire format.

    Fan-out hands the same ``Encoded`` to every subscriber; each transport asks
    for its format and gets bytes shared with every other subscriber of that
    format. ``ws`` holds the WebSocket frame per format (``kernel.wsframe``
    fills it), so a delivery costs one dict lookup, not an encode or a framing.
    """

    __slots__ = ("_cache", "wire", "ws")

    def __init__(self, wire: dict[str, Any]) -> None:
        self.wire = wire
        self._cache: dict[str, bytes] = {}
        self.ws: dict[str, bytes] = {}

    @classmethod
    def of(cls, msg: ProtocolMessage) -> Encoded:
        return cls(msg.to_wire())

    def payload(self, fmt: Format) -> bytes:
        data = self._cache.get(fmt)
        if data is None:
            data = encode_wire(self.wire, fmt)
            self._cache[fmt] = data
        return data


def message_size(m: Mapping[str, Any]) -> int:
    """A message's size as Ably counts it against maxMessageSize: data, name, clientId and extras
    (TO3l8). The server checks it (NACK 40009) and the SDK checks it before sending."""
    size = 0
    for key in ("data", "name", "clientId"):
        v = m.get(key)
        if isinstance(v, str):
            size += len(v.encode("utf-8", "surrogatepass"))
        elif isinstance(v, (bytes, bytearray)):
            size += len(v)
        elif v is not None:
            size += len(json.dumps(v, default=str))
    extras = m.get("extras")
    if extras is not None:
        size += len(json.dumps(extras, default=str))
    return size
