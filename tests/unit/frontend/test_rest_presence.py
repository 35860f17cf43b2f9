"""REST presence (GET /channels/{id}/presence) against one node: auth, capability, filters, paging."""

import base64
import json
import random
from urllib.parse import urlsplit

import trio

from frontend import rest_presence
from frontend.auth import ApiKey, parse_capability
from frontend.config import FrontendConfig
from frontend.node import FrontendNode
from frontend.testing import MemoryOutlet
from kernel.protocol import Action, ProtocolMessage

FULL = "app.full:full-secret-0123456789"
NARROW = "app.narrow:narrow-secret-0123456789"


def make_node() -> FrontendNode:
    keys = {
        "app.full": ApiKey("app.full", "full-secret-0123456789", parse_capability({"*": ["*"]})),
        "app.narrow": ApiKey("app.narrow", "narrow-secret-0123456789", parse_capability({"*": ["publish"]})),
    }
    return FrontendNode(FrontendConfig(keys=keys), rng=random.Random(1))


def enter(node: FrontendNode, *client_ids: str) -> None:
    outlet = MemoryOutlet()
    s = node.connect(1, {"v": "6", "key": FULL}, outlet)
    assert s is not None
    node.handle(1, s, ProtocolMessage(action=Action.ATTACH, channel="room"))
    for i, cid in enumerate(client_ids):
        node.handle(
            2,
            s,
            ProtocolMessage(
                action=Action.PRESENCE,
                channel="room",
                msg_serial=i,
                presence=[{"action": 2, "clientId": cid, "data": cid.upper()}],
            ),
        )


def get(node: FrontendNode, target: str, key: str | None = FULL, method: bytes = b"GET"):
    headers = []
    if key is not None:
        headers.append((b"authorization", b"Basic " + base64.b64encode(key.encode())))

    async def main():
        with trio.fail_after(5):
            return await rest_presence.serve(node, method, headers, urlsplit(target), 3)

    return trio.run(main)


def test_members_filters_and_paging():
    node = make_node()
    enter(node, "a", "b", "c")
    status, ctype, body, extra = get(node, "/channels/room/presence")
    assert status == 200 and ctype == b"application/json" and not extra
    assert [(m["clientId"], m["data"], m["action"]) for m in json.loads(body)] == [
        ("a", "A", 1),
        ("b", "B", 1),
        ("c", "C", 1),
    ]
    status, _, body, _ = get(node, "/channels/room/presence?clientId=b")
    assert [m["clientId"] for m in json.loads(body)] == ["b"]
    status, _, body, extra = get(node, "/channels/room/presence?limit=2")
    assert [m["clientId"] for m in json.loads(body)] == ["a", "b"]
    [(name, link)] = extra
    assert name == b"link" and b"cursor=2" in link and b'rel="next"' in link
    _, _, body, extra = get(node, "/channels/room/presence?limit=2&cursor=2")
    assert [m["clientId"] for m in json.loads(body)] == ["c"] and not extra
    assert json.loads(get(node, "/channels/empty/presence")[2]) == []


def test_refusals_carry_ably_errors():
    node = make_node()
    for target, key, method, code in [
        ("/channels/room/presence", None, b"GET", 40100),
        ("/channels/room/presence", "app.full:wrong-secret-000000000", b"GET", 40101),
        ("/channels/room/presence", NARROW, b"GET", 40160),
        ("/channels/room/presence?limit=0", FULL, b"GET", 40000),
        ("/channels/room/presence", FULL, b"POST", 40500),
    ]:
        status, _, body, extra = get(node, target, key, method)
        error = json.loads(body)["error"]
        assert error["code"] == code and error["statusCode"] == status, (target, error)
        assert (b"x-ably-errorcode", str(code).encode()) in extra


def test_presence_history_pages_the_events_newest_first_and_needs_the_history_capability():
    from frontend.presence_history import PresenceHistory

    node = make_node()
    history = PresenceHistory(node, lambda: 3)
    enter(node, "a", "b", "c")

    def hist(target, key=FULL):
        headers = [(b"authorization", b"Basic " + base64.b64encode(key.encode()))]

        async def main():
            with trio.fail_after(5):
                return await rest_presence.serve(node, b"GET", headers, urlsplit(target), 3, history=history)

        return trio.run(main)

    status, _, body, extra = hist("/channels/room/presence/history")
    assert status == 200 and [(m["clientId"], m["action"]) for m in json.loads(body)] == [
        ("c", 2),
        ("b", 2),
        ("a", 2),
    ]
    assert b'rel="next"' not in dict(extra)[b"link"]
    _, _, body, extra = hist("/channels/room/presence/history?limit=2&direction=forwards")
    assert [m["clientId"] for m in json.loads(body)] == ["a", "b"]
    link = dict(extra)[b"link"].decode()
    nxt = link.split('rel="current", <./history?')[1].split(">")[0]
    _, _, body, _ = hist("/channels/room/presence/history?" + nxt)
    assert [m["clientId"] for m in json.loads(body)] == ["c"]
    status, _, body, _ = hist("/channels/room/presence/history", key=NARROW)
    assert status == 401 and json.loads(body)["error"]["code"] == 40160
    status, _, body, _ = hist("/channels/room/presence/history?limit=0")
    assert status == 400
    # Without a history reader (the REST layer's batch use), the path is not served.
    assert get(node, "/channels/room/presence/history")[0] == 404


def test_sandbox_presence_fixtures_are_entered_once_under_one_connection():
    from frontend.presence import FIXTURE_CONNECTION
    from frontend.presence_history import PresenceHistory

    node = make_node()
    history = PresenceHistory(node, lambda: 3)
    fixtures = [
        {"clientId": "client_bool", "data": "true"},
        {"clientId": "client_json", "data": "{}", "encoding": "json"},
    ]
    outcomes = []
    node.presence.enter_fixtures(1, "persisted:presence_fixtures", fixtures, outcomes.append)
    node.presence.enter_fixtures(2, "persisted:presence_fixtures", fixtures, outcomes.append)  # a second app
    assert outcomes == [True, True]
    _, _, body, _ = get(node, "/channels/persisted:presence_fixtures/presence")
    members = json.loads(body)
    assert [(m["clientId"], m["connectionId"], m["action"]) for m in members] == [
        ("client_bool", FIXTURE_CONNECTION, 1),
        ("client_json", FIXTURE_CONNECTION, 1),
    ]
    assert members[1]["encoding"] == "json"

    async def main():
        headers = [(b"authorization", b"Basic " + base64.b64encode(FULL.encode()))]
        target = urlsplit("/channels/persisted:presence_fixtures/presence/history")
        with trio.fail_after(5):
            return await rest_presence.serve(node, b"GET", headers, target, 3, history=history)

    events = json.loads(trio.run(main)[2])
    assert sorted((e["clientId"], e["action"]) for e in events) == [("client_bool", 2), ("client_json", 2)]
