"""The peer-link wire: frames between frontends, and the authenticated hello.

A link is one TCP connection from a dialing node to a listening node; a node
*sends* only on links it dialed, so everything one node sends another (requests,
replies, pushes) travels on one ordered stream.

Frame: a 4-byte big-endian length, then a msgpack array ``[kind, ...]``. The
first frame on a link is HELLO ``[kind, version, node_id, timestamp_ms, nonce,
listen_port, mac]``, whose mac is HMAC-SHA256 over
``version|node_id|timestamp|listen_port|nonce`` with the cluster secret. The
listen port lets the listener answer a dialer it has not yet heard of by
gossip. A listener drops and counts a link whose hello does not
verify or is older than ``HELLO_MAX_SKEW_MS``. Pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

PEER_PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 64 * 1024 * 1024
HELLO_MAX_SKEW_MS = 60_000
_LEN = struct.Struct("!I")


class PeerProtocolError(Exception):
    """A peer sent something we cannot accept; the link is dropped and counted."""


class Kind(enum.IntEnum):
    """Frame kinds. The numbers are the protocol: append only."""

    HELLO = 1
    REQUEST = 2  # [kind, req_id, op, args]
    REPLY = 3  # [kind, req_id, ok, result]
    PUSH = 4  # [kind, op, args]


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    node_id: str
    timestamp_ms: int
    nonce: bytes
    listen_port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    req_id: int
    op: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    req_id: int
    ok: bool
    result: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Push:
    op: str
    args: dict[str, Any]


Frame = Hello | Request | Reply | Push


def _mac(secret: bytes, node_id: str, ts: int, port: int, nonce: bytes) -> bytes:
    msg = f"{PEER_PROTOCOL_VERSION}|{node_id}|{ts}|{port}|".encode() + nonce
    return hmac.new(secret, msg, hashlib.sha256).digest()


def encode_hello(secret: str, node_id: str, timestamp_ms: int, nonce: bytes, listen_port: int) -> bytes:
    body = [
        int(Kind.HELLO),
        PEER_PROTOCOL_VERSION,
        node_id,
        timestamp_ms,
        nonce,
        listen_port,
        _mac(secret.encode(), node_id, timestamp_ms, listen_port, nonce),
    ]
    return _frame(body)


def verify_hello(secrets: Sequence[str], frame: list[Any], now_ms: int) -> Hello:
    """Check a HELLO frame's version, freshness and MAC; raise PeerProtocolError."""
    if len(frame) != 7 or frame[0] != Kind.HELLO:
        raise PeerProtocolError("first frame must be HELLO")
    _, version, node_id, ts, nonce, port, mac = frame
    if version != PEER_PROTOCOL_VERSION:
        raise PeerProtocolError(f"peer protocol version {version!r} unsupported")
    if (
        not isinstance(node_id, str)
        or not isinstance(ts, int)
        or not isinstance(nonce, bytes)
        or not isinstance(port, int)
        or not 0 < port < 65536
    ):
        raise PeerProtocolError("malformed HELLO")
    if not isinstance(mac, bytes) or not any(
        hmac.compare_digest(_mac(s.encode(), node_id, ts, port, nonce), mac) for s in secrets
    ):
        raise PeerProtocolError("HELLO does not authenticate")
    if abs(now_ms - ts) > HELLO_MAX_SKEW_MS:
        raise PeerProtocolError("HELLO is stale")
    return Hello(node_id=node_id, timestamp_ms=ts, nonce=nonce, listen_port=port)


def _frame(body: list[Any]) -> bytes:
    data = msgpack.packb(body, use_bin_type=True)
    return _LEN.pack(len(data)) + data


def encode(frame: Request | Reply | Push) -> bytes:
    if isinstance(frame, Request):
        return _frame([int(Kind.REQUEST), frame.req_id, frame.op, frame.args])
    if isinstance(frame, Reply):
        return _frame([int(Kind.REPLY), frame.req_id, frame.ok, frame.result])
    return _frame([int(Kind.PUSH), frame.op, frame.args])


def decode_body(data: bytes) -> list[Any]:
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise PeerProtocolError(f"malformed peer frame: {type(exc).__name__}") from None
    if not isinstance(body, list) or not body or not isinstance(body[0], int):
        raise PeerProtocolError("peer frame must be a non-empty array starting with its kind")
    return body


def parse(body: list[Any]) -> Request | Reply | Push:
    """Turn a decoded frame body into a typed frame; raise PeerProtocolError."""
    kind = body[0]
    if (
        kind == Kind.REQUEST
        and len(body) == 4
        and isinstance(body[1], int)
        and isinstance(body[2], str)
        and isinstance(body[3], dict)
    ):
        return Request(req_id=body[1], op=body[2], args=body[3])
    if kind == Kind.REPLY and len(body) == 4 and isinstance(body[1], int) and isinstance(body[2], bool):
        return Reply(req_id=body[1], ok=body[2], result=body[3])
    if kind == Kind.PUSH and len(body) == 3 and isinstance(body[1], str) and isinstance(body[2], dict):
        return Push(op=body[1], args=body[2])
    raise PeerProtocolError(f"malformed peer frame of kind {kind!r}")


class FrameReader:
    """Splits a byte stream into frame bodies. Feed bytes, then iterate ``frames()``."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> None:
        self._buf += data

    def frames(self) -> list[list[Any]]:
        out = []
        buf = self._buf
        while len(buf) >= 4:
            (n,) = _LEN.unpack_from(buf)
            if n > self._max:
                raise PeerProtocolError(f"peer frame of {n} bytes exceeds {self._max}")
            if len(buf) < 4 + n:
                break
            out.append(decode_body(bytes(buf[4 : 4 + n])))
            del buf[: 4 + n]
        return out
