"""Malformed frames get ERROR 40000 on their own transport, which closes; everyone else is unaffected."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
import trio

import continuity
from continuity import ConnectionEvent, ConnectionState
from kernel.protocol import Action
from tests.support.procs import API_KEY, run_frontend
from tests.support.raw import raw_connect

pytestmark = pytest.mark.integration

MAX_FRAME = 65_536
PUBLISH = {"action": 15, "channel": "x", "messages": [{"data": "y"}]}
BIG = 2 * MAX_FRAME
GARBAGE: list[tuple[str, str, str | bytes]] = [
    ("invalid-json", "json", '{"action": 15, "channel": '),
    ("json-not-an-object", "json", "[1, 2, 3]"),
    ("json-unknown-action", "json", '{"action": 99}'),
    ("json-in-binary-frame", "json", b"\xff\xfe\x00"),
    ("truncated-msgpack", "msgpack", msgpack.packb(PUBLISH)[:-3]),
    ("msgpack-not-a-map", "msgpack", msgpack.packb([15, "x"])),
    ("oversize-json", "json", '{"action":15,"channel":"x","messages":[{"data":"' + "z" * BIG + '"}]}'),
    ("oversize-msgpack", "msgpack", msgpack.packb({"action": 15, "messages": [{"data": b"z" * BIG}]})),
]


async def test_garbage_frames_get_40000_and_do_not_disturb_others(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with run_frontend(tmp_path / "fe", max_message_size=MAX_FRAME, max_frame_size=MAX_FRAME) as fe:
            async with continuity.connect(fe.url, key=API_KEY) as healthy:
                healthy_id = healthy.id
                ch = healthy.channel("calm")
                async with ch.subscribe() as sub:
                    for n, (label, fmt, frame) in enumerate(GARBAGE):
                        async with raw_connect(fe.url, fmt=fmt, key=API_KEY) as raw:  # type: ignore[arg-type]
                            await raw.recv_action(Action.CONNECTED)
                            await raw.send_frame(frame)
                            error = await raw.recv_action(Action.ERROR)
                            assert error.error is not None and error.error.code == 40000, label
                            assert error.channel is None, label
                            await raw.closed()
                        # The healthy client still publishes, receives, and never lost its transport.
                        serials = await ch.publish("tick", n)
                        msg = await sub.receive()
                        assert (msg.data, msg.serial) == (n, serials[0]), label
                assert healthy.id == healthy_id and healthy.transports_opened == 1
                assert not [
                    e
                    for e in healthy.event_log
                    if isinstance(e, ConnectionEvent) and e.state is ConnectionState.DISCONNECTED
                ]
            metrics = await fe.metrics()
            errors = sum(v for k, v in metrics.items() if k.startswith("continuity_protocol_errors_total"))
            assert errors >= len(GARBAGE)
            status, _ = await fe.get("/health")
            assert status == 200
