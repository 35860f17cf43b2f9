"""The typed peer protocol: every record survives the wire, bad maps are refused, outcomes are an enum."""

from __future__ import annotations

import msgpack
import pytest

from frontend import peerops as O
from frontend.channel_log import ChannelLog
from kernel.errors import ErrorCode, ErrorInfo, RemoteProtocolError


def _entry():
    lg = ChannelLog("ch", "ep", max_messages=10, retention_ms=1000)
    _, entry = lg.append(1, [{"data": "x"}], {"action": 15, "channel": "ch"}, publisher="c", msg_serial=3)
    return lg, entry


def _roundtrip(op: O.PeerOp) -> O.PeerOp:
    args = msgpack.unpackb(msgpack.packb(op.to_args(), use_bin_type=True), raw=False)
    return O.decode(op.OP, args)


def test_every_record_survives_the_wire() -> None:
    lg, entry = _entry()
    ops: list[O.PeerOp] = [
        O.Publish(channel="ch", connection_id="c", msg_serial=3, messages=[{"data": "x"}], envelope={"a": 1}),
        O.Attach(channel="ch", from_serial="ep:1", subscribe=False, stream_from=None),
        O.LogFetch(channel="ch"),
        O.Replicate(channel="ch", entry=entry, committed=0),
        O.ReplicaSync(channel="ch", log=lg.snapshot()),
        O.Deliver(channel="ch", entry=entry),
        O.CopyReleased(channel="ch", epoch="ep", last_seq=4),
        O.Take(channel="ch"),
        O.Unsubscribe(channel="ch"),
        O.SessionPut(state={"id": "c", "epoch": 2}),
        O.SessionFetch(connection_id="c"),
        O.Handover(connection_id="c", epoch=2),
        O.Discard(connection_id="c", epoch=3),
        O.PresenceOwned(connection_id="c", epoch=3),
        O.PresenceOwner(connection_id="c", epoch=3),
        O.RestCall(kind="history", args={"channel": "ch", "query": {"limit": 10}}),
    ]
    assert {type(op).OP for op in ops} == set(O._RECORDS)
    for op in ops:
        back = _roundtrip(op)
        assert type(back) is type(op)
        if isinstance(op, (O.Replicate, O.Deliver)):
            assert isinstance(back, (O.Replicate, O.Deliver))
            assert back.entry.to_wire() == op.entry.to_wire()
            assert not isinstance(op, O.Replicate) or (isinstance(back, O.Replicate) and back.committed == 0)
        else:
            assert back == op


_EMPTY_LOG = {"epoch": "e", "floor": 0, "last_seq": 0, "entries": []}


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("nope", {}),
        ("publish", {"channel": "ch", "conn": "c", "msg_serial": "1", "messages": [{}], "envelope": {}}),
        ("publish", {"channel": "ch", "conn": "c", "msg_serial": 1, "messages": [], "envelope": {}}),
        ("attach", {"channel": 5}),
        ("replicate", {"channel": "ch", "entry": [1, 2]}),
        ("replica_sync", {"channel": "ch", "log": {"epoch": "e", "floor": 0, "last_seq": 0, "entries": [1]}}),
        ("replica_sync", {"channel": "ch", "log": {**_EMPTY_LOG, "committed": "0"}}),
        ("replicate", {"channel": "ch", "entry": _entry()[1].to_wire(), "committed": "3"}),
        ("handover", {"id": "c", "epoch": True}),
        ("session_put", {"state": {"id": "c"}}),
    ],
)
def test_bad_maps_raise_remote_protocol_error(op: str, args: dict) -> None:
    with pytest.raises(RemoteProtocolError):
        O.decode(op, args)


def test_publish_outcomes_never_read_text() -> None:
    numbered = O.PublishReply(O.Outcome.NUMBERED, ("e:1",)).to_wire()
    assert O.publish_outcome(True, numbered) == O.PublishReply(O.Outcome.NUMBERED, ("e:1",))
    err = ErrorInfo.of(ErrorCode.INTERNAL_CHANNEL, "gone")
    refused = O.publish_outcome(True, O.PublishReply(O.Outcome.REFUSED, error=err).to_wire())
    assert refused.outcome is O.Outcome.REFUSED and refused.error == err
    for code in O.NOT_EXECUTED:
        assert O.publish_outcome(False, O.Refused(code, "anything")).outcome is O.Outcome.NOT_NUMBERED
    for code in set(O.Refusal) - O.NOT_EXECUTED:
        # Same words as a certain refusal, but the code says the outcome is unknown.
        assert O.publish_outcome(False, O.Refused(code, "not home for ch")).outcome is O.Outcome.UNKNOWN
    assert O.publish_outcome(True, "garbage").outcome is O.Outcome.UNKNOWN
    assert O.Refused.from_wire([999, "x"]).code is O.Refusal.BAD_REPLY
