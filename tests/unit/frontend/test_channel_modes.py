"""Modes changed on an attached channel (RTL16a, setOptions re-attaches with new modes), pure node."""

from kernel.protocol import Action, Flag
from tests.unit.frontend.test_node import Client, make_node


def delivered(c: Client) -> list[str]:
    return [m["data"] for f in c.recv() if f.action is Action.MESSAGE for m in f.messages]


def test_adding_subscribe_delivers_from_then_on_not_what_came_while_publish_only():
    # ably-js's setOptions test (tests/interop/test_ably_js_channel_scope.py): the message published
    # while the channel was publish-only was delivered once subscribe was added, because the
    # session's cursor stayed at its first attach and the fan-out fills a cursor that is behind.
    node = make_node()
    sub, pub = Client(node), Client(node)
    sub.recv()
    sub.attach(10, "ch", flags=int(Flag.PUBLISH))
    pub.publish(20, "ch", "while-publish-only")
    assert [f.action for f in sub.recv()] == [Action.ATTACHED]
    sub.attach(30, "ch", flags=int(Flag.PUBLISH | Flag.SUBSCRIBE))
    [attached] = sub.recv()
    assert attached.action is Action.ATTACHED and attached.has(Flag.SUBSCRIBE)
    pub.publish(40, "ch", "after-adding-subscribe")
    assert delivered(sub) == ["after-adding-subscribe"]
    sub.attach(50, "ch", flags=int(Flag.PUBLISH))
    sub.recv()
    pub.publish(60, "ch", "after-removing-subscribe")
    assert delivered(sub) == []
    sub.attach(70, "ch", flags=int(Flag.SUBSCRIBE))
    sub.recv()
    pub.publish(80, "ch", "again")
    assert delivered(sub) == ["again"]
