"""Pre-built server frames: unmasked, sized right, built once per message and format."""

from __future__ import annotations

import pytest
from wsproto.frame_protocol import Frame, FrameProtocol, Opcode

from kernel import protocol as P
from kernel.protocol import Encoded
from kernel.wsframe import frame_for


def _parse(data: bytes) -> list[Frame]:
    """The frames a client reading ``data`` sees, via wsproto's client-side frame parser."""
    client = FrameProtocol(client=True, extensions=[])
    client.receive_bytes(data)
    return list(client.received_frames())


@pytest.mark.parametrize("size", [10, 125, 126, 65535, 65536])
@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_frame_carries_the_payload(fmt: P.Format, size: int) -> None:
    enc = Encoded({"action": 15, "channel": "c", "messages": [{"data": "x" * size}]})
    (got,) = _parse(frame_for(enc, fmt))
    assert got.message_finished and got.frame_finished
    if fmt == "json":
        assert got.opcode is Opcode.TEXT
        assert got.payload == enc.payload("json").decode()
    else:
        assert got.opcode is Opcode.BINARY
        assert bytes(got.payload) == enc.payload("msgpack")


def test_frame_is_built_once_per_format_and_cached_on_the_message() -> None:
    enc = Encoded({"action": 0})
    first = frame_for(enc, "json")
    assert frame_for(enc, "json") is first
    assert enc.ws["json"] is first
    assert frame_for(enc, "msgpack") is enc.ws["msgpack"]
    assert first != enc.ws["msgpack"]
