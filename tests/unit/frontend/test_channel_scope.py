"""Channel-scoped refusals: Ably's channel-name rules (40010) and bad params kept in the channel's scope."""

from __future__ import annotations

import pytest

from frontend.channel_rules import channel_name_problem
from kernel import protocol as P
from kernel.errors import RemoteProtocolError


@pytest.mark.parametrize("name", ["a", "chat:lobby", "[meta]log", "[?rewind=1]foo", "x" * 1024, "a]b", "ü"])
def test_valid_names(name: str) -> None:
    assert channel_name_problem(name) is None


@pytest.mark.parametrize("name", ["", ":hell", "[meta", "[]name", "[meta]", "[meta]:x", "x" * 1025])
def test_invalid_names(name: str) -> None:
    assert channel_name_problem(name) is not None


def test_bad_params_of_a_channel_frame_are_a_channel_problem() -> None:
    pm = P.from_wire({"action": int(P.Action.ATTACH), "channel": "c", "params": {"delta": {"x": 1}}})
    assert pm.params is None and pm.channel_problem is not None
    pm = P.from_wire({"action": int(P.Action.ATTACH), "channel": "c", "params": {"a": [1], "b": None}})
    assert pm.params is None and pm.channel_problem is not None
    # Numbers and booleans are taken as text, as Ably does (ably-js sends {rewind: 1}).
    pm = P.from_wire({"action": int(P.Action.ATTACH), "channel": "c", "params": {"rewind": 1, "x": True}})
    assert pm.params == {"rewind": "1", "x": "true"} and pm.channel_problem is None
    pm = P.from_wire({"action": int(P.Action.ATTACH), "channel": "c", "params": "x"})
    assert pm.channel_problem is not None
    assert "channelProblem" not in str(pm.to_wire()) and "channel_problem" not in str(pm.to_wire())
    pm = P.from_wire({"action": int(P.Action.ATTACH), "channel": "c", "params": {"rewind": "1"}})
    assert pm.params == {"rewind": "1"} and pm.channel_problem is None


def test_bad_params_without_a_channel_still_fail_the_frame() -> None:
    with pytest.raises(RemoteProtocolError):
        P.from_wire({"action": int(P.Action.ATTACH), "params": {"rewind": [1]}})


def test_rewind_by_count() -> None:
    from frontend.channel_log import rewind_cursor
    from frontend.channel_params import parse_attach_params

    def cursor(value: str, now: int = 0) -> str | None:
        return parse_attach_params({"rewind": value}, now).rewind_cursor

    assert cursor("2") == rewind_cursor(count=2)
    assert cursor("1000") == rewind_cursor(count=100)  # Ably's limit
    assert cursor("0") is None
    assert cursor("10s", 60_000) == rewind_cursor(since_ms=50_000)  # by time: served too
    assert parse_attach_params(None, 0).rewind_cursor is None


def test_modes_param() -> None:
    from frontend.channel_rules import modes_param

    assert modes_param(None) == 0
    assert modes_param({"delta": "vcdiff"}) == 0
    assert modes_param({"modes": "presence,subscribe"}) == P.Flag.PRESENCE | P.Flag.SUBSCRIBE
    with pytest.raises(ValueError, match="fly"):
        modes_param({"modes": "subscribe,fly"})


def test_message_actions_a_client_may_publish() -> None:
    from frontend.channel_rules import message_action_problem

    assert message_action_problem([{"data": "x"}, {"action": 0, "data": "y"}]) is None
    for action, what in ((1, "message.update"), (2, "message.delete"), (5, "message.append")):
        problem = message_action_problem([{"data": "x"}, {"action": action, "serial": "e:1"}])
        assert problem is not None and problem.startswith(what) and "not supported" in problem
    for action in (3, 4, 9, "1"):
        problem = message_action_problem([{"action": action}])
        assert problem is not None and "may not publish" in problem


def test_derived_channels_are_refused_and_other_qualifiers_are_not() -> None:
    from frontend.channel_rules import unsupported_qualifier

    problem = unsupported_qualifier("[filter=bmFtZQ==?rewind=1]chan")
    assert problem is not None and "derived channels" in problem
    assert unsupported_qualifier("chan") is None
    assert unsupported_qualifier("[meta]chan") is None
