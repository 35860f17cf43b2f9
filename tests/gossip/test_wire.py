"""Codec tests: round trips, and garbage, forged, oversized and wrong-version input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossip.errors import LocalProtocolError, RemoteProtocolError
from gossip.wire import (
    MAX_DATAGRAM_BYTES,
    PROTOCOL_VERSION,
    Ack,
    Alive,
    Dead,
    IndirectPing,
    Keyring,
    MemberState,
    Message,
    MessageType,
    Metadata,
    Nack,
    Ping,
    PushPull,
    ServingState,
    StateRecord,
    Suspect,
    decode_packet,
    encode_body,
    encode_message,
    seal,
)

from .helpers import make_core

KEY_A = b"a" * 32
KEY_B = b"b" * 32
META = Metadata(
    role="router", zone="a", addresses={"ws": "10.0.0.1:8080"}, load=0.25, state=ServingState.DRAINING
)

MESSAGES: list[Message] = [
    Ping(seq=1, target="m1"),
    IndirectPing(seq=2, target="m2", target_address=("10.0.0.2", 7946), nack=True),
    Ack(seq=3),
    Nack(seq=4),
    Alive(name="m5", address=("10.0.0.5", 7946), incarnation=9, metadata=META),
    Suspect(name="m6", incarnation=1, by="m1"),
    Dead(name="m7", incarnation=2, by="m7"),
    PushPull(
        source="m8", source_address=("10.0.0.8", 7946), join=True, reply=False,
        members=(StateRecord(name="m8", address=("10.0.0.8", 7946), incarnation=0, state=MemberState.SUSPECT,
                             metadata=META),),
    ),
]  # fmt: skip


def test_message_types_are_the_protocol() -> None:
    assert PROTOCOL_VERSION == 1
    assert [int(t) for t in MessageType] == list(range(1, 9))


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: Message) -> None:
    ring = Keyring([KEY_A])
    data = seal(ring, encode_body([encode_message(msg), encode_message(Ack(seq=99))]))
    assert decode_packet(ring, data, max_bytes=10**6) == [msg, Ack(seq=99)]


def test_a_body_of_many_messages_round_trips() -> None:
    msgs = [Ack(seq=i) for i in range(40)]
    assert decode_packet(Keyring(), seal(Keyring(), encode_body([encode_message(m) for m in msgs]))) == msgs


@given(st.binary(max_size=2000))
def test_garbage_raises_only_remote_protocol_error(data: bytes) -> None:
    for ring in (Keyring(), Keyring([KEY_A])):
        try:
            decode_packet(ring, data)
        except RemoteProtocolError as exc:
            assert exc.reason in {"malformed", "unauthenticated", "oversized", "version"}


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=5),
        lambda c: st.lists(c, max_size=6),
    )
)
def test_well_formed_msgpack_of_the_wrong_shape_is_malformed(value: object) -> None:
    import msgpack

    body = msgpack.packb([value])
    try:
        decode_packet(Keyring(), bytes([PROTOCOL_VERSION, 0]) + body)
    except RemoteProtocolError as exc:
        assert exc.reason == "malformed"


def test_forged_and_tampered_packets_are_unauthenticated() -> None:
    body = encode_body([encode_message(Ping(seq=1, target="x"))])
    good = seal(Keyring([KEY_A]), body)
    with pytest.raises(RemoteProtocolError) as forged:
        decode_packet(Keyring([KEY_A]), seal(Keyring([KEY_B]), body))
    assert forged.value.reason == "unauthenticated"
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(RemoteProtocolError, match="tag"):
        decode_packet(Keyring([KEY_A]), tampered)
    with pytest.raises(RemoteProtocolError, match="not signed"):
        decode_packet(Keyring([KEY_A]), seal(Keyring(), body))
    with pytest.raises(RemoteProtocolError, match="no keyring"):
        decode_packet(Keyring(), good)


def test_oversized_and_wrong_version_datagrams_are_refused() -> None:
    with pytest.raises(RemoteProtocolError) as big:
        decode_packet(Keyring(), bytes([PROTOCOL_VERSION, 0]) + b"\x90" * MAX_DATAGRAM_BYTES)
    assert big.value.reason == "oversized"
    body = encode_body([encode_message(Ack(seq=1))])
    with pytest.raises(RemoteProtocolError) as version:
        decode_packet(Keyring(), bytes([PROTOCOL_VERSION + 1, 0]) + body)
    assert version.value.reason == "version"


def test_keyring_rotation_install_use_remove() -> None:
    body = encode_body([encode_message(Ack(seq=1))])
    old, new = Keyring([KEY_A]), Keyring([KEY_A])
    new.install(KEY_B)
    assert decode_packet(new, seal(old, body)) == [Ack(seq=1)]
    new.use(KEY_B)
    old.install(KEY_B)  # members that have not switched yet still accept the new key
    assert decode_packet(old, seal(new, body)) == [Ack(seq=1)]
    with pytest.raises(LocalProtocolError):
        new.remove(KEY_B)
    new.remove(KEY_A)
    with pytest.raises(RemoteProtocolError):
        decode_packet(new, seal(Keyring([KEY_A]), body))
    with pytest.raises(LocalProtocolError):
        Keyring([b"short"])


def test_core_drops_and_counts_bad_datagrams_and_survives() -> None:
    core = make_core(0)
    src = ("10.0.0.9", 7946)
    core.receive(0.0, src, b"\xff\x00garbage")
    core.receive(0.0, src, seal(Keyring([KEY_B]), encode_body([encode_message(Ping(seq=1, target="m0"))])))
    core.receive(0.0, src, b"\x01\x00" + b"\x90" * 2000)
    core.receive(0.0, src, b"\x01\x01" + b"x" * 40)
    c = core.counters
    assert (c.dropped_version, c.dropped_unauthenticated, c.dropped_oversized) == (1, 2, 1)
    assert c.dropped == 4
    assert core.outgoing() == []
