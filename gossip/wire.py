"""Wire format: message records, msgpack codec, the authenticated envelope and the keyring.

A datagram (UDP) or a stream message (one TCP connection) is an *envelope*::

    version (1 byte) | flags (1 byte) | tag (16 bytes, if flags & AUTHENTICATED) | body

``tag`` is HMAC-SHA256 truncated to 16 bytes, keyed with the keyring's primary key, over
``version | flags | body``; a receiver accepts a tag made with any key of its keyring, so keys rotate by
install -> use -> remove. ``body`` is a msgpack array of messages, each an array ``[type, *fields]``:
the first one of a datagram is usually a ping or ack, the rest are piggybacked rumours.

Decoding raises only `RemoteProtocolError`, whose ``reason`` says why (malformed, unauthenticated,
oversized, version).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

import msgpack

from .errors import LocalProtocolError, RemoteProtocolError

PROTOCOL_VERSION = 1
# Largest datagram we send or accept, envelope included: fits a 1,500-byte MTU with IP/UDP headers.
MAX_DATAGRAM_BYTES = 1400
# Largest push-pull stream message (the full state of a big cluster).
MAX_STREAM_BYTES = 8 * 1024 * 1024
# Largest encoded `Metadata`; an alive rumour with it still fits a datagram with room for others.
MAX_METADATA_BYTES = 512
# Largest member name, in UTF-8 bytes.
MAX_NAME_BYTES = 128
TAG_BYTES = 16
FLAG_AUTHENTICATED = 0x01
ENVELOPE_OVERHEAD = 2 + TAG_BYTES
# Bytes an array header of up to 65,535 messages takes in msgpack.
ARRAY_HEADER_BYTES = 3

Address = tuple[str, int]


class MessageType(IntEnum):
    """Message type codes. Append-only: these numbers are the protocol; never renumber or reuse one."""

    PING = 1
    INDIRECT_PING = 2
    ACK = 3
    NACK = 4
    ALIVE = 5
    SUSPECT = 6
    DEAD = 7
    PUSH_PULL = 8


class MemberState(IntEnum):
    """A member's liveness as one member sees it. Append-only wire codes."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


class ServingState(StrEnum):
    """Whether a member accepts new work (`active`) or is winding down (`draining`)."""

    ACTIVE = "active"
    DRAINING = "draining"


@dataclass(frozen=True, slots=True, kw_only=True)
class Metadata:
    """What a member says about itself; disseminated with its alive rumours.

    At most `MAX_METADATA_BYTES` once encoded (checked by `encode_metadata`).
    """

    role: str = ""  # e.g. "frontend", "router"
    zone: str = ""  # failure domain, e.g. "a"
    addresses: dict[str, str] = field(default_factory=dict)  # service name -> "host:port" or URL
    load: float = 0.0  # application-defined load figure, e.g. connections / capacity
    state: ServingState = ServingState.ACTIVE


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    seq: int
    target: str  # the name the sender believes lives at this address


@dataclass(frozen=True, slots=True, kw_only=True)
class IndirectPing:
    seq: int
    target: str
    target_address: Address
    nack: bool  # the requester wants a nack if the target does not answer


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Alive:
    name: str
    address: Address
    incarnation: int
    metadata: Metadata


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspect:
    name: str
    incarnation: int
    by: str  # the member that suspects it


@dataclass(frozen=True, slots=True, kw_only=True)
class Dead:
    name: str
    incarnation: int
    by: str  # the member that declares it dead; equal to `name` for a graceful leave


@dataclass(frozen=True, slots=True, kw_only=True)
class StateRecord:
    """One member's entry in a push-pull full state."""

    name: str
    address: Address
    incarnation: int
    state: MemberState
    metadata: Metadata


@dataclass(frozen=True, slots=True, kw_only=True)
class PushPull:
    source: str
    source_address: Address
    join: bool
    reply: bool  # this is the answer to a push-pull; do not answer it
    members: tuple[StateRecord, ...]


Message = Ping | IndirectPing | Ack | Nack | Alive | Suspect | Dead | PushPull
Rumour = Alive | Suspect | Dead

# ---------------------------------------------------------------------------------------------- encode

_packer = msgpack.Packer(use_bin_type=True)


def _meta_fields(m: Metadata) -> list[Any]:
    return [m.role, m.zone, m.addresses, float(m.load), m.state.value]


def encode_metadata(m: Metadata) -> bytes:
    """Return the msgpack encoding of `m`; raise `LocalProtocolError` above `MAX_METADATA_BYTES`."""
    data = _packer.pack(_meta_fields(m))
    if len(data) > MAX_METADATA_BYTES:
        raise LocalProtocolError(f"metadata is {len(data)} bytes, the limit is {MAX_METADATA_BYTES}")
    return data


def encode_message(msg: Message) -> bytes:
    """Return one message as msgpack bytes, ready to be concatenated into a body by `encode_body`."""
    fields: list[Any]
    match msg:
        case Ping():
            fields = [MessageType.PING, msg.seq, msg.target]
        case IndirectPing():
            a = msg.target_address
            fields = [MessageType.INDIRECT_PING, msg.seq, msg.target, a[0], a[1], msg.nack]
        case Ack():
            fields = [MessageType.ACK, msg.seq]
        case Nack():
            fields = [MessageType.NACK, msg.seq]
        case Alive():
            fields = [
                MessageType.ALIVE,
                msg.name,
                msg.address[0],
                msg.address[1],
                msg.incarnation,
                _meta_fields(msg.metadata),
            ]
        case Suspect():
            fields = [MessageType.SUSPECT, msg.name, msg.incarnation, msg.by]
        case Dead():
            fields = [MessageType.DEAD, msg.name, msg.incarnation, msg.by]
        case PushPull():
            members = [
                [r.name, r.address[0], r.address[1], r.incarnation, int(r.state), _meta_fields(r.metadata)]
                for r in msg.members
            ]
            a = msg.source_address
            fields = [MessageType.PUSH_PULL, msg.source, a[0], a[1], msg.join, msg.reply, members]
    return _packer.pack(fields)


def encode_body(encoded_messages: list[bytes]) -> bytes:
    """Return a body: a msgpack array header followed by already-encoded messages."""
    n = len(encoded_messages)
    if n < 16:
        header = bytes([0x90 | n])
    else:
        header = b"\xdc" + n.to_bytes(2, "big")
    return header + b"".join(encoded_messages)


# ---------------------------------------------------------------------------------------------- decode


def _bad(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed {what}", reason="malformed")


def _int(v: object, what: str) -> int:
    if type(v) is not int or v < 0 or v > 2**63:
        raise _bad(what)
    return v


def _str(v: object, what: str, limit: int = MAX_NAME_BYTES) -> str:
    if type(v) is not str or len(v) > limit:
        raise _bad(what)
    return v


def _bool(v: object, what: str) -> bool:
    if type(v) is not bool:
        raise _bad(what)
    return v


def _address(host: object, port: object) -> Address:
    h = _str(host, "host", 255)
    p = _int(port, "port")
    if p > 65535:
        raise _bad("port")
    return (h, p)


def _metadata(v: object) -> Metadata:
    if type(v) is not list or len(v) != 5:
        raise _bad("metadata")
    role, zone, addresses, load, state = v
    if type(addresses) is not dict or not all(
        type(k) is str and type(a) is str for k, a in addresses.items()
    ):
        raise _bad("metadata addresses")
    if type(load) not in (float, int):
        raise _bad("metadata load")
    try:
        serving = ServingState(state)
    except ValueError:
        raise _bad("metadata state") from None
    return Metadata(
        role=_str(role, "role", 64),
        zone=_str(zone, "zone", 64),
        addresses=addresses,
        load=float(load),
        state=serving,
    )


def _decode_one(v: object) -> Message:
    if type(v) is not list or not v or type(v[0]) is not int:
        raise _bad("message")
    t, *f = v
    try:
        mtype = MessageType(t)
    except ValueError:
        raise _bad("message type") from None
    n = len(f)
    match mtype:
        case MessageType.PING if n == 2:
            return Ping(seq=_int(f[0], "seq"), target=_str(f[1], "target"))
        case MessageType.INDIRECT_PING if n == 5:
            return IndirectPing(
                seq=_int(f[0], "seq"),
                target=_str(f[1], "target"),
                target_address=_address(f[2], f[3]),
                nack=_bool(f[4], "nack"),
            )
        case MessageType.ACK if n == 1:
            return Ack(seq=_int(f[0], "seq"))
        case MessageType.NACK if n == 1:
            return Nack(seq=_int(f[0], "seq"))
        case MessageType.ALIVE if n == 5:
            return Alive(
                name=_str(f[0], "name"),
                address=_address(f[1], f[2]),
                incarnation=_int(f[3], "incarnation"),
                metadata=_metadata(f[4]),
            )
        case MessageType.SUSPECT if n == 3:
            return Suspect(
                name=_str(f[0], "name"), incarnation=_int(f[1], "incarnation"), by=_str(f[2], "by")
            )
        case MessageType.DEAD if n == 3:
            return Dead(name=_str(f[0], "name"), incarnation=_int(f[1], "incarnation"), by=_str(f[2], "by"))
        case MessageType.PUSH_PULL if n == 6 and type(f[5]) is list:
            members = []
            for r in f[5]:
                if type(r) is not list or len(r) != 6:
                    raise _bad("state record")
                try:
                    state = MemberState(_int(r[4], "state"))
                except ValueError:
                    raise _bad("member state") from None
                members.append(
                    StateRecord(
                        name=_str(r[0], "name"),
                        address=_address(r[1], r[2]),
                        incarnation=_int(r[3], "incarnation"),
                        state=state,
                        metadata=_metadata(r[5]),
                    )
                )
            return PushPull(
                source=_str(f[0], "source"),
                source_address=_address(f[1], f[2]),
                join=_bool(f[3], "join"),
                reply=_bool(f[4], "reply"),
                members=tuple(members),
            )
    raise _bad(mtype.name.lower())


def decode_body(body: bytes, *, max_bytes: int = MAX_DATAGRAM_BYTES) -> list[Message]:
    """Return the messages of a body; raise `RemoteProtocolError` if it is not a valid body."""
    if len(body) > max_bytes:
        raise RemoteProtocolError(f"{len(body)} bytes exceeds {max_bytes}", reason="oversized")
    try:
        value = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises many types on garbage; all mean the same to us
        raise _bad("msgpack") from exc
    if type(value) is not list:
        raise _bad("body")
    return [_decode_one(v) for v in value]


# -------------------------------------------------------------------------------------------- envelope


class Keyring:
    """HMAC keys of the cluster. The primary key signs; any installed key verifies.

    Rotation: `install(new)` everywhere, then `use(new)` everywhere, then `remove(old)`. An empty
    keyring sends unauthenticated packets and accepts only unauthenticated ones.
    """

    def __init__(self, keys: list[bytes] | tuple[bytes, ...] = ()) -> None:
        self._keys: list[bytes] = []
        for k in keys:
            self.install(k)

    @classmethod
    def from_secret(cls, secret: str | bytes | None) -> Keyring:
        """Return a keyring whose single key is SHA-256 of `secret` (empty if `secret` is None/empty)."""
        if not secret:
            return cls()
        raw = secret.encode() if isinstance(secret, str) else secret
        return cls([hashlib.sha256(raw).digest()])

    @property
    def primary(self) -> bytes | None:
        """Return the signing key, or None for an empty keyring."""
        return self._keys[0] if self._keys else None

    @property
    def keys(self) -> tuple[bytes, ...]:
        return tuple(self._keys)

    def install(self, key: bytes) -> None:
        """Add `key` for verification (it becomes primary only if the ring was empty)."""
        if len(key) < 16:
            raise LocalProtocolError("a gossip key must be at least 16 bytes")
        if key not in self._keys:
            self._keys.append(key)

    def use(self, key: bytes) -> None:
        """Make an installed `key` the signing key."""
        if key not in self._keys:
            raise LocalProtocolError("key is not installed")
        self._keys.remove(key)
        self._keys.insert(0, key)

    def remove(self, key: bytes) -> None:
        """Remove a non-primary `key`."""
        if self._keys and self._keys[0] == key:
            raise LocalProtocolError("cannot remove the primary key; use() another one first")
        if key in self._keys:
            self._keys.remove(key)


def _tag(key: bytes, header: bytes, body: bytes) -> bytes:
    h = hmac.new(key, header, hashlib.sha256)
    h.update(body)
    return h.digest()[:TAG_BYTES]


def seal(keyring: Keyring, body: bytes) -> bytes:
    """Return the envelope around `body`, signed with the primary key if there is one."""
    key = keyring.primary
    if key is None:
        return bytes([PROTOCOL_VERSION, 0]) + body
    header = bytes([PROTOCOL_VERSION, FLAG_AUTHENTICATED])
    return header + _tag(key, header, body) + body


def open_envelope(keyring: Keyring, data: bytes, *, max_bytes: int = MAX_DATAGRAM_BYTES) -> bytes:
    """Return the body of an envelope after checking size, version and tag.

    Raises `RemoteProtocolError` with reason ``oversized``, ``malformed``, ``version`` or
    ``unauthenticated``.
    """
    if len(data) > max_bytes:
        raise RemoteProtocolError(f"{len(data)} bytes exceeds {max_bytes}", reason="oversized")
    if len(data) < 2:
        raise _bad("envelope")
    if data[0] != PROTOCOL_VERSION:
        raise RemoteProtocolError(f"protocol version {data[0]}", reason="version")
    flags = data[1]
    if flags & ~FLAG_AUTHENTICATED:
        raise _bad("envelope flags")
    authenticated = bool(flags & FLAG_AUTHENTICATED)
    if not keyring.keys:
        if authenticated:
            raise RemoteProtocolError("signed packet but no keyring", reason="unauthenticated")
        return data[2:]
    if not authenticated or len(data) < 2 + TAG_BYTES:
        raise RemoteProtocolError("packet is not signed", reason="unauthenticated")
    header, tag, body = data[:2], data[2 : 2 + TAG_BYTES], data[2 + TAG_BYTES :]
    for key in keyring.keys:
        if hmac.compare_digest(tag, _tag(key, header, body)):
            return body
    raise RemoteProtocolError("bad packet tag", reason="unauthenticated")


def decode_packet(keyring: Keyring, data: bytes, *, max_bytes: int = MAX_DATAGRAM_BYTES) -> list[Message]:
    """Return the messages of a received datagram or stream message; raise `RemoteProtocolError`."""
    return decode_body(open_envelope(keyring, data, max_bytes=max_bytes), max_bytes=max_bytes)
