"""Codec: round trips in both formats, base64 transcoding, and garbage input."""

import json

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel import protocol as P
from kernel.errors import ErrorCode, ErrorInfo, RemoteProtocolError
from kernel.protocol import Action, Encoded, Flag, ProtocolMessage

MAX = 1 << 20


@pytest.mark.parametrize("fmt", P.FORMATS)
def test_round_trip(fmt):
    pm = ProtocolMessage(
        action=Action.ATTACHED,
        flags=int(Flag.RESUMED | Flag.SUBSCRIBE),
        channel="chat",
        channel_serial="e:4",
        error=ErrorInfo.of(ErrorCode.CONTINUITY_LOST, "lost"),
        messages=[{"name": "n", "data": "d"}],
    )
    back = P.decode(P.encode(pm, fmt), fmt, max_size=MAX)
    assert back.action is Action.ATTACHED
    assert back.has(Flag.RESUMED) and back.has(Flag.SUBSCRIBE)
    assert back.channel_serial == "e:4"
    assert back.error == pm.error
    assert back.messages == [{"name": "n", "data": "d"}]


def test_absent_fields_are_omitted_and_nulls_accepted():
    assert ProtocolMessage(action=Action.HEARTBEAT).to_wire() == {"action": 0}
    pm = P.decode(
        b'{"action":15,"channel":"c","msgSerial":0,"channelSerial":null,'
        b'"messages":[{"name":null,"data":null}]}',
        "json",
        max_size=MAX,
    )
    assert pm.channel_serial is None
    assert pm.messages == [{"name": None, "data": None}]


def test_binary_data_reaches_json_readers_as_base64():
    enc = Encoded({"action": 15, "messages": [{"data": b"\x01\x02", "encoding": "cipher"}]})
    as_json = json.loads(enc.payload("json"))
    assert as_json["messages"][0] == {"data": "AQI=", "encoding": "cipher/base64"}
    assert msgpack.unpackb(enc.payload("msgpack"), raw=False)["messages"][0]["data"] == b"\x01\x02"


def test_encoded_is_built_once_per_format():
    enc = Encoded({"action": 0})
    assert enc.payload("json") is enc.payload("json")
    assert enc.payload("msgpack") is enc.payload("msgpack")


@pytest.mark.parametrize(
    "data,fmt",
    [
        (b"{not json", "json"),
        (b"[]", "json"),
        (b'{"action":"x"}', "json"),
        (b'{"action":999}', "json"),
        (b'{"action":true}', "json"),
        (b'{"action":15,"messages":{}}', "json"),
        (b'{"action":15,"messages":[1]}', "json"),
        (b'{"action":15,"messages":[{"name":3}]}', "json"),
        (b'{"action":10,"channel":5}', "json"),
        (b'{"action":10,"params":{"a":{}}}', "json"),
        (b"\xc1", "msgpack"),
        (msgpack.packb({"action": 15})[:-1], "msgpack"),
        (msgpack.packb({1: 2}), "msgpack"),
        ("text", "msgpack"),
        (b"\xff\xfe", "json"),
        (b'{"action":15,"msgSerial":-1}', "json"),
        (b'{"action":15,"msgSerial":1e3}', "json"),
        (b'{"action":15,"messages":[{"data":NaN}]}', "json"),
        (b'{"action":15,"messages":[{"data":123456789012345678901234567890}]}', "json"),
    ],
)
def test_garbage_raises_only_remote_protocol_error(data, fmt):
    with pytest.raises(RemoteProtocolError) as info:
        P.decode(data, fmt, max_size=MAX)
    assert info.value.code is ErrorCode.BAD_REQUEST


def test_oversized_frame_is_refused_before_parsing():
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        P.decode(b"x" * 101, "json", max_size=100)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_msgpack_decoder(data):
    try:
        pm = P.decode(data, "msgpack", max_size=MAX)
    except RemoteProtocolError:
        return
    assert isinstance(pm.action, Action)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 63) - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
pm_like = st.fixed_dictionaries(
    {"action": st.integers(-2, 25)},
    optional={
        k: json_values for k in ("flags", "channel", "msgSerial", "messages", "channelSerial", "params")
    },
)


@settings(max_examples=300, deadline=None)
@given(pm_like)
def test_fuzz_json_decoder_with_protocol_shaped_input(raw):
    for fmt, data in (("json", json.dumps(raw).encode()), ("msgpack", msgpack.packb(raw))):
        try:
            pm = P.decode(data, fmt, max_size=MAX)
        except RemoteProtocolError:
            continue
        assert pm.to_wire()["action"] == raw["action"]


def test_comet_body_decoder():
    assert [m.action for m in P.decode_json_array(b'[{"action":0},{"action":7}]', max_size=MAX)] == [
        Action.HEARTBEAT,
        Action.CLOSE,
    ]
    assert P.encode_json_array([ProtocolMessage(action=Action.HEARTBEAT)]) == b'[{"action":0}]\n'
    with pytest.raises(RemoteProtocolError):
        P.decode_json_array(b'"x"', max_size=MAX)
