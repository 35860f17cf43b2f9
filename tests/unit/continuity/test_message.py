"""Payload encoding and decoding of client messages."""

from __future__ import annotations

import pytest

from continuity.message import Message, OutboundMessage, decode_data, encode_data


@pytest.mark.parametrize(
    ("data", "wire", "encoding"),
    [
        ("hi", "hi", None),
        (b"\x00\x01", b"\x00\x01", None),
        ({"a": 1}, '{"a":1}', "json"),
        ([1, 2], "[1,2]", "json"),
        (None, None, None),
        (3, "3", "json"),
    ],
)
def test_encode_data(data: object, wire: object, encoding: str | None) -> None:
    assert encode_data(data) == (wire, encoding)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "encoding", "decoded", "rest"),
    [
        ("AAE=", "base64", b"\x00\x01", None),
        ('{"a":1}', "json", {"a": 1}, None),
        ("eyJhIjoxfQ==", "json/base64", {"a": 1}, None),
        ("aGk=", "utf-8/base64", "hi", None),
        ("AAE=", "cipher+aes-128-cbc/base64", None, "cipher+aes-128-cbc"),
        ("plain", None, "plain", None),
    ],
)
def test_decode_data(data: object, encoding: str | None, decoded: object, rest: str | None) -> None:
    out, left = decode_data(data, encoding)
    assert left == rest
    if decoded is not None:
        assert out == decoded


def test_round_trip_through_wire_mapping() -> None:
    wire = OutboundMessage(name="n", data={"k": [1]}).to_wire()
    msg = Message.from_wire("ch", {**wire, "serial": "e:1", "id": "c:0:0"}, "e:1")
    assert (msg.name, msg.data, msg.serial, msg.id) == ("n", {"k": [1]}, "e:1", "c:0:0")
    assert msg.channel_serial == "e:1"
