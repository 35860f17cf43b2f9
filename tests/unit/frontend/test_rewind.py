"""Channel params on ATTACH: rewind=N and rewind=<duration>; a malformed rewind refused, params Ably
does not document reported in the ATTACHED (pure node)."""

import pytest

from frontend.channel_params import ParamError, parse_attach_params
from kernel.errors import ErrorCode
from kernel.protocol import Action, Flag
from tests.unit.frontend.test_node import Client, make_node


def attach_with(c: Client, now: int, channel: str, **params: str) -> None:
    c.send(now, action=Action.ATTACH, channel=channel, params=params)


def published(node, channel: str, batches: list[list[str]], start: int = 10) -> list[str]:
    pub = Client(node)
    serials: list[str] = []
    for i, batch in enumerate(batches):
        pub.publish(start + i * 1000, channel, *batch)
    for f in pub.recv():
        if f.action is Action.ACK:
            serials += f.res[0]["serials"]
    return serials


def test_rewind_count_replays_the_last_n_messages_after_attached_with_backlog():
    node = make_node()
    serials = published(node, "ch", [["a"], ["b", "c"], ["d"], ["e", "f", "g"]])
    sub = Client(node, 5000)
    sub.recv()
    attach_with(sub, 5000, "ch", rewind="5")
    att, *msgs = sub.recv()
    assert att.action is Action.ATTACHED and att.has(Flag.HAS_BACKLOG) and not att.has(Flag.RESUMED)
    assert att.params == {"rewind": "5"}
    # The attach point is just before the first rewound message (history untilAttach pages from it).
    got = [m for f in msgs for m in f.messages]
    assert [m["data"] for m in got] == ["c", "d", "e", "f", "g"]
    assert [m["serial"] for m in got] == serials[-5:]
    epoch = serials[0].rpartition(":")[0]
    assert att.channel_serial == f"{epoch}:{int(serials[-5].rpartition(':')[2]) - 1}"
    # Then live, once each.
    published(node, "ch", [["h"]], start=6000)
    [live] = sub.recv()
    assert [m["data"] for m in live.messages] == ["h"]


def test_rewind_duration_replays_what_was_published_within_it():
    node = make_node()
    published(node, "ch", [["old"], ["mid"], ["new"]], start=1000)  # stamped 1000, 2000, 3000
    sub = Client(node, 3500)
    sub.recv()
    attach_with(sub, 3500, "ch", rewind="2s")  # since 1500
    att, *msgs = sub.recv()
    assert att.has(Flag.HAS_BACKLOG)
    assert [m["data"] for f in msgs for m in f.messages] == ["mid", "new"]


def test_rewind_on_an_empty_channel_attaches_with_no_backlog():
    node = make_node()
    sub = Client(node)
    sub.recv()
    attach_with(sub, 1, "empty", rewind="10")
    [att] = sub.recv()
    assert att.action is Action.ATTACHED and not att.has(Flag.HAS_BACKLOG)
    assert att.channel_serial == node.channels.local_log("empty").last_serial


def test_a_resume_ignores_rewind_and_continues_from_its_serial():
    node = make_node()
    published(node, "ch", [["a"], ["b"]])
    sub = Client(node, 3000)
    sub.recv()
    attach_with(sub, 3000, "ch", rewind="1")
    _att, msg = sub.recv()
    serial = msg.channel_serial
    sub.drop(3600)
    published(node, "ch", [["c"]], start=4000)
    again = sub.resume(5000)
    again.recv()
    again.send(5000, action=Action.ATTACH, channel="ch", channel_serial=serial, params={"rewind": "1"})
    att2, *replay = again.recv()
    assert att2.has(Flag.RESUMED) and [m["data"] for f in replay for m in f.messages] == ["c"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"rewind": "lots"}, "neither a message count"),
        ({"rewind": "99h"}, "at most 24h"),
    ],
)
def test_bad_rewind_gets_a_channel_error_and_others_are_served(params, fragment):
    node = make_node()
    c = Client(node)
    c.recv()
    attach_with(c, 1, "ch", **params)
    [err] = c.recv()
    assert err.action is Action.ERROR and err.channel == "ch"
    assert err.error.code == ErrorCode.BAD_REQUEST and fragment in err.error.message
    assert node.metrics.errors_sent.labels(code="40000")._value.get() == 1
    c.send(2, action=Action.ATTACH, channel="other")
    [ok] = c.recv()
    assert ok.action is Action.ATTACHED  # the connection keeps being served


def test_unknown_params_attach_with_an_error_that_names_them():
    """A param Ably does not document is not applied, not echoed, and not silent: the ATTACHED
    carries 40000 naming it (counted), the rewind beside it is served, and a re-attach on the same
    transport (ably-js's setOptions) says it again."""
    node = make_node()
    published(node, "ch", [["a"], ["b"], ["c"]])
    c = Client(node, 5000)
    c.recv()
    attach_with(c, 5000, "ch", rewind="2", rewnd="5", occupancy="metrics")
    att, *msgs = c.recv()
    assert att.action is Action.ATTACHED and att.has(Flag.HAS_BACKLOG)
    assert att.params == {"rewind": "2", "occupancy": "metrics"}
    assert att.error is not None and att.error.code == ErrorCode.BAD_REQUEST and att.error.status_code == 400
    assert "'rewnd'" in att.error.message
    assert [m["data"] for f in msgs for m in f.messages] == ["b", "c"]
    assert node.metrics.errors_sent.labels(code="40000")._value.get() == 1
    attach_with(c, 5001, "ch", custom="x")
    [again] = c.recv()
    assert again.action is Action.ATTACHED and again.has(Flag.RESUMED) and again.params is None
    assert again.error is not None and "'custom'" in again.error.message
    # Only documented params: no error.
    attach_with(c, 5002, "other", delta="vcdiff")
    [ok] = c.recv()
    assert ok.action is Action.ATTACHED and ok.error is None and ok.params == {"delta": "vcdiff"}


def test_parse_attach_params_values():
    assert parse_attach_params(None, 0).rewind_cursor is None
    assert parse_attach_params({"rewind": "0"}, 0).rewind_cursor is None
    assert parse_attach_params({"rewind": "3"}, 0).echo == {"rewind": "3"}
    assert (
        parse_attach_params({"rewind": "500"}, 0).rewind_cursor
        == parse_attach_params({"rewind": "100"}, 0).rewind_cursor
    )
    odd = parse_attach_params({"custom": "x", "delta": "vcdiff", "a": "1"}, 0)
    assert odd.rewind_cursor is None and odd.echo == {"delta": "vcdiff"} and odd.unknown == ("a", "custom")
    assert "'a', 'custom'" in (odd.unknown_params_error() or "")
    assert parse_attach_params({"rewind": "2", "occupancy": "metrics"}, 0).unknown_params_error() is None
    with pytest.raises(ParamError):
        parse_attach_params({"rewind": "-1"}, 0)


def test_a_repeated_attach_answered_late_never_replays_twice():
    """The client's attach timer fires while a remote home (or the store) answers: two ATTACHes
    are in flight on one transport; the second answer must not queue the replay again."""
    node = make_node()
    published(node, "ch", [["a"], ["b"]])
    sub = Client(node, 3000)
    sub.recv()
    real_attach = node.channels.attach
    answers = []
    node.channels.attach = lambda now, ch, frm, done, **kw: answers.append((now, ch, frm, done, kw))
    attach_with(sub, 3000, "ch", rewind="2")
    attach_with(sub, 3100, "ch", rewind="2")
    node.channels.attach = real_attach
    for now, ch, frm, done, kw in answers:
        real_attach(now, ch, frm, done, **kw)
    first, *replay, second = sub.recv()
    assert first.action is Action.ATTACHED and first.has(Flag.HAS_BACKLOG)
    assert [m["data"] for f in replay for m in f.messages] == ["a", "b"]
    assert second.action is Action.ATTACHED and second.has(Flag.RESUMED)
    assert second.channel_serial == replay[-1].channel_serial
