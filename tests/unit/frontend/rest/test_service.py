"""RestService on a standalone node (no peers: every callback runs before the call returns)."""

import base64
import json
import random

import trio

from frontend.auth import ApiKey, parse_capability
from frontend.config import FrontendConfig
from frontend.node import FrontendNode
from frontend.rest.service import RestService

KEY = ApiKey("app.k", "secret-secret-secret-secret-secret-0123456", parse_capability({"*": ["*"]}))
BASIC = [
    (b"authorization", b"Basic " + base64.b64encode(b"app.k:secret-secret-secret-secret-secret-0123456"))
]


def service() -> RestService:
    cfg = FrontendConfig(cluster_secret="unit-cluster-secret-0123456789", keys={KEY.name: KEY})
    clock = iter(range(10**6, 10**9, 10))
    return RestService(FrontendNode(cfg, rng=random.Random(3)), lambda: next(clock))


async def call(svc: RestService, method: bytes, target: bytes, body: object = None, headers=BASIC):
    raw = b"" if body is None else json.dumps(body).encode()
    with trio.fail_after(5):
        resp = await svc.handle(method, target, headers, raw)
    return resp.status, json.loads(resp.body), dict(resp.headers)


async def test_publish_then_history_with_links():
    svc = service()
    for i in range(3):
        status, body, _ = await call(svc, b"POST", b"/channels/c1/messages", {"name": f"m{i}", "data": i})
        assert status == 201 and body["channel"] == "c1" and len(body["serials"]) == 1
    status, page, headers = await call(svc, b"GET", b"/channels/c1/messages?limit=2")
    assert status == 200 and [m["name"] for m in page] == ["m2", "m1"]
    assert 'rel="next"' in headers[b"link"].decode() and 'rel="first"' in headers[b"link"].decode()
    nxt = headers[b"link"].decode().split('rel="current", <./messages?')[1].split(">")[0]
    status, page, headers = await call(svc, b"GET", b"/channels/c1/messages?" + nxt.encode())
    assert [m["name"] for m in page] == ["m0"] and 'rel="next"' not in headers[b"link"].decode()


async def test_one_batch_spec_answers_flat_results_and_an_array_batch_results():
    svc = service()
    status, body, _ = await call(
        svc, b"POST", b"/messages", {"channels": ["a", "b"], "messages": {"data": "x"}}
    )
    assert status == 201 and [r["channel"] for r in body] == ["a", "b"]
    status, body, _ = await call(svc, b"POST", b"/messages", [{"channels": "a", "messages": [{"data": "y"}]}])
    assert body[0]["successCount"] == 1 and body[0]["results"][0]["channel"] == "a"


async def test_refusals_are_errorinfo_and_counted():
    svc = service()
    status, body, _ = await call(svc, b"GET", b"/keys/app.k/requestToken")
    assert status == 404 and body["error"]["code"] == 40400
    status, body, _ = await call(svc, b"GET", b"/channels/c1/messages", headers=[])
    assert status == 401 and body["error"]["code"] == 40100
    status, body, _ = await call(svc, b"GET", b"/channels/c1/messages?limit=0")
    assert status == 400 and body["error"]["code"] == 40003
    wrong = [(b"authorization", b"Basic " + base64.b64encode(b"app.k:nope"))]
    status, body, _ = await call(svc, b"POST", b"/channels/c1/messages", {"data": 1}, headers=wrong)
    assert status == 401 and body["error"]["code"] == 40101
    rendered = svc.node.metrics.render().decode()
    assert 'continuity_rest_requests_total{code="40400",route="request_token"} 1.0' in rendered


async def test_request_token_with_the_key_and_use_it_as_bearer():
    svc = service()
    status, td, _ = await call(svc, b"POST", b"/keys/app.k/requestToken", {"clientId": "zed"})
    assert status == 200 and td["clientId"] == "zed" and td["capability"] == '{"*":["*"]}'
    bearer = [(b"authorization", b"Bearer " + base64.b64encode(td["token"].encode()))]
    status, body, _ = await call(svc, b"POST", b"/channels/c2/messages", {"data": "x"}, headers=bearer)
    assert status == 201
    status, page, _ = await call(svc, b"GET", b"/channels/c2/messages", headers=bearer)
    assert page[0]["clientId"] == "zed"
    status, body, _ = await call(svc, b"POST", b"/channels/c2/messages", {"clientId": "amy"}, headers=bearer)
    assert status == 400 and body["error"]["code"] == 40012


async def test_a_jwt_works_as_bearer_with_its_capability():
    import time

    import jwt

    svc = service()
    claims = {
        "exp": int(time.time()) + 60,
        "x-ably-capability": '{"jwt:*":["publish"]}',
        "x-ably-clientId": "j",
    }
    token = jwt.encode(claims, KEY.secret, algorithm="HS256", headers={"kid": KEY.name})
    bearer = [(b"authorization", b"Bearer " + base64.b64encode(token.encode()))]
    status, body, _ = await call(svc, b"POST", b"/channels/jwt:a/messages", {"data": "x"}, headers=bearer)
    assert status == 201, body
    status, body, _ = await call(svc, b"POST", b"/channels/other/messages", {"data": "x"}, headers=bearer)
    assert status == 401 and body["error"]["code"] == 40160


async def test_channel_listing_and_details():
    svc = service()
    for name in (b"pre:a", b"pre:b", b"other"):
        await call(svc, b"POST", b"/channels/" + name + b"/messages", {"data": "x"})
    status, names, _ = await call(svc, b"GET", b"/channels?prefix=pre:&by=id")
    assert status == 200 and names == ["pre:a", "pre:b"]
    status, details, _ = await call(svc, b"GET", b"/channels?limit=1")
    assert [d["channelId"] for d in details] == ["other"]
    status, detail, _ = await call(svc, b"GET", b"/channels/pre%3Aa")
    metrics = detail["status"]["occupancy"]["metrics"]
    assert detail["channelId"] == "pre:a" and metrics["connections"] == 0 and metrics["presenceMembers"] == 0


async def test_time_answers_in_the_asked_format_without_credentials():
    import msgpack

    svc = service()
    with trio.fail_after(5):
        resp = await svc.handle(b"GET", b"/time", [(b"accept", b"application/x-msgpack")], b"")
    assert resp.status == 200 and isinstance(msgpack.unpackb(resp.body)[0], int)
