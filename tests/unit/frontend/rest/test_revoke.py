"""revokeTokens (RSA17) and batch presence (RSC24) through RestService on a standalone node."""

import base64
import json
import random

import trio

from frontend.auth import ApiKey, parse_capability
from frontend.config import FrontendConfig
from frontend.node import FrontendNode
from frontend.rest.revoke import RETRY_MS
from frontend.rest.service import RestService
from frontend.revocation import REAUTH_MARGIN_MS, Revocation
from frontend.testing import MemoryOutlet
from kernel import protocol as P
from kernel.placement import ClusterView, Peer
from kernel.protocol import Action, ProtocolMessage

SECRET = "revocable-secret-0123456789-0123456789"
REVOCABLE = ApiKey("app.rev", SECRET, parse_capability({"*": ["*"]}), revocable_tokens=True)
PLAIN = ApiKey("app.plain", SECRET, parse_capability({"*": ["*"]}))
NARROW = ApiKey("app.narrow", SECRET, parse_capability({"room4": ["presence"], "room0": ["publish"]}))
NOW = 1_800_000_000_000


def basic(key: ApiKey) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Basic " + base64.b64encode(f"{key.name}:{key.secret}".encode()))]


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Bearer " + base64.b64encode(token.encode()))]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def service() -> tuple[RestService, Clock]:
    keys = {k.name: k for k in (REVOCABLE, PLAIN, NARROW)}
    cfg = FrontendConfig(cluster_secret="unit-cluster-secret-0123456789", keys=keys)
    clock = Clock()
    return RestService(FrontendNode(cfg, rng=random.Random(5)), clock), clock


async def call(svc: RestService, method: bytes, target: str, body: object = None, headers=()):
    raw = b"" if body is None else json.dumps(body).encode()
    with trio.fail_after(5):
        resp = await svc.handle(method, target.encode(), list(headers), raw)
    return resp.status, json.loads(resp.body)


async def token_for(svc: RestService, client_id: str, key: ApiKey = REVOCABLE) -> str:
    status, td = await call(
        svc, b"POST", f"/keys/{key.name}/requestToken", {"clientId": client_id}, basic(key)
    )
    assert status == 200, td
    return str(td["token"])


def connect(svc: RestService, now: int, token: str) -> tuple[MemoryOutlet, object]:
    outlet = MemoryOutlet()
    session = svc.node.connect(now, {"v": "6", "access_token": token}, outlet)
    assert session is not None and outlet.drain()[0].action == Action.CONNECTED
    return outlet, session


def final_error(outlet: MemoryOutlet) -> tuple[int, int]:
    assert outlet.closed and outlet.final is not None
    pm = P.decode(outlet.final.payload("json"), "json", max_size=1 << 20)
    assert pm.error is not None
    return pm.action, pm.error.code


async def test_revoking_a_client_id_cuts_its_live_connections_and_refuses_its_tokens():
    svc, clock = service()
    alice, bob = await token_for(svc, "alice"), await token_for(svc, "bob")
    clock.now += 5
    alice_out, _ = connect(svc, clock.now, alice)
    bob_out, _ = connect(svc, clock.now, bob)
    targets = {"targets": ["clientId:alice", "invalidType:abc"]}
    status, result = await call(svc, b"POST", "/keys/app.rev/revokeTokens", targets, basic(REVOCABLE))
    assert status == 200 and result["successCount"] == 1 and result["failureCount"] == 1
    assert result["results"][0] == {
        "target": "clientId:alice",
        "issuedBefore": clock.now,
        "appliesAt": clock.now,
    }
    assert result["results"][1]["error"]["statusCode"] == 400
    assert final_error(alice_out) == (Action.DISCONNECTED, 40141)  # resumable: the SDK renews
    assert not bob_out.closed
    status, body = await call(svc, b"GET", "/channels/x/messages", headers=bearer(alice))
    assert status == 401 and body["error"]["code"] == 40141
    refused = MemoryOutlet()
    assert svc.node.connect(clock.now, {"v": "6", "access_token": alice}, refused) is None
    assert final_error(refused) == (Action.ERROR, 40141)
    clock.now += 1
    fresh = await token_for(svc, "alice")  # issued after issuedBefore: not revoked
    status, _ = await call(svc, b"GET", "/channels/x/messages", headers=bearer(fresh))
    assert status == 200
    assert 'continuity_auth_failures_total{code="40141"}' in svc.node.metrics.render().decode()


async def test_the_reauth_margin_delays_the_cut():
    svc, clock = service()
    alice = await token_for(svc, "alice")
    clock.now += 5
    outlet, _ = connect(svc, clock.now, alice)
    body = {"targets": ["clientId:alice"], "allowReauthMargin": True}
    status, result = await call(svc, b"POST", "/keys/app.rev/revokeTokens", body, basic(REVOCABLE))
    assert status == 200 and result["results"][0]["appliesAt"] == clock.now + REAUTH_MARGIN_MS
    svc.revoker.tick(clock.now + REAUTH_MARGIN_MS - 1)
    assert not outlet.closed
    svc.revoker.tick(clock.now + REAUTH_MARGIN_MS)
    assert final_error(outlet) == (Action.DISCONNECTED, 40141)


async def test_revoke_refusals():
    svc, _ = service()
    targets = {"targets": ["clientId:a"]}
    token = await token_for(svc, "a")
    status, body = await call(svc, b"POST", "/keys/app.rev/revokeTokens", targets, bearer(token))
    assert (status, body["error"]["code"]) == (401, 40162)
    status, body = await call(svc, b"POST", "/keys/app.plain/revokeTokens", targets, basic(PLAIN))
    assert (status, body["error"]["code"]) == (401, 40163)
    status, body = await call(svc, b"POST", "/keys/app.rev/revokeTokens", targets, basic(PLAIN))
    assert (status, body["error"]["code"]) == (401, 40102)
    status, body = await call(svc, b"POST", "/keys/app.rev/revokeTokens", targets)
    assert (status, body["error"]["code"]) == (401, 40100)
    status, body = await call(svc, b"POST", "/keys/app.rev/revokeTokens", {"targets": []}, basic(REVOCABLE))
    assert (status, body["error"]["code"]) == (400, 40001)
    status, body = await call(svc, b"GET", "/keys/app.rev/revokeTokens", None, basic(REVOCABLE))
    assert status == 404


async def test_a_peer_pushes_records_which_are_merged_and_enforced():
    svc, clock = service()
    alice = await token_for(svc, "alice")
    clock.now += 5
    outlet, _ = connect(svc, clock.now, alice)
    record = Revocation("app.rev", "clientId", "alice", clock.now, clock.now)
    replies: list[tuple[bool, object]] = []
    serve = svc.node.peer_ops["token_revoke"]
    serve(clock.now, "fe-b1", {"records": [record.to_wire()]}, lambda ok, res: replies.append((ok, res)))
    serve(clock.now, "fe-b1", {"records": [record.to_wire()]}, lambda ok, res: replies.append((ok, res)))
    serve(clock.now, "fe-b1", {"records": [["bad"]]}, lambda ok, res: replies.append((ok, res)))
    assert replies[0] == (True, 1) and replies[1] == (True, 0) and replies[2][0] is False
    assert final_error(outlet) == (Action.DISCONNECTED, 40141)


def enter(svc: RestService, channel: str, client_id: str) -> None:
    outlet = MemoryOutlet()
    s = svc.node.connect(NOW, {"v": "6", "key": f"{REVOCABLE.name}:{SECRET}", "clientId": client_id}, outlet)
    assert s is not None
    svc.node.handle(NOW, s, ProtocolMessage(action=Action.ATTACH, channel=channel))
    presence = [{"action": 2, "clientId": client_id, "data": b"\x01"}]
    svc.node.handle(
        NOW, s, ProtocolMessage(action=Action.PRESENCE, channel=channel, msg_serial=0, presence=presence)
    )


async def test_batch_presence_answers_each_channel_or_its_error():
    svc, _ = service()
    enter(svc, "room0", "zed")
    enter(svc, "room4", "amy")
    status, result = await call(svc, b"GET", "/presence?channels=room0,room4,:bad", None, basic(NARROW))
    assert status == 200 and result["successCount"] == 1 and result["failureCount"] == 2
    r0, r4, bad = result["results"]
    assert r0["channel"] == "room0" and r0["error"]["statusCode"] == 401 and "presence" not in r0
    assert r4["channel"] == "room4" and [m["clientId"] for m in r4["presence"]] == ["amy"]
    assert r4["presence"][0]["action"] == 1 and r4["presence"][0]["encoding"] == "base64"  # binary, in JSON
    assert bad["error"]["code"] == 40010
    status, body = await call(svc, b"GET", "/presence", None, basic(NARROW))
    assert (status, body["error"]["code"]) == (400, 40003)
    status, body = await call(svc, b"GET", "/presence?channels=room4")
    assert (status, body["error"]["code"]) == (401, 40100)


async def test_a_jwt_is_revoked_by_its_revocation_key():
    import time

    import jwt

    svc, clock = service()
    clock.now = int(time.time() * 1000)  # PyJWT checks iat against the real clock
    issued_s = clock.now // 1000 - 10
    claims = {"iat": issued_s, "exp": issued_s + 3600, "x-ably-revocation-key": "group-7"}
    token = jwt.encode(claims, REVOCABLE.secret, algorithm="HS256", headers={"kid": REVOCABLE.name})
    status, _ = await call(svc, b"GET", "/channels/x/messages", headers=bearer(token))
    assert status == 200
    body = {"targets": ["revocationKey:group-7"]}
    status, result = await call(svc, b"POST", "/keys/app.rev/revokeTokens", body, basic(REVOCABLE))
    assert status == 200 and result["successCount"] == 1
    status, body = await call(svc, b"GET", "/channels/x/messages", headers=bearer(token))
    assert (status, body["error"]["code"]) == (401, 40141)


class FakeBus:
    """Answers each peer request at once: ok unless the peer is in ``down``."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.sent: list[tuple[str, list]] = []

    def request(self, peer, op, on_reply, timeout_s=5.0):
        self.sent.append((peer, op.args["records"]))
        on_reply(peer not in self.down, 0)


def view_of(*alive: str, dead: tuple[str, ...] = ()) -> ClusterView:
    peers = [Peer(node_id=n, role="frontend", zone="b") for n in alive]
    peers += [Peer(node_id=n, role="frontend", zone="b", alive=False) for n in dead]
    return ClusterView({p.node_id: p for p in peers})


async def test_records_reach_every_peer_at_least_once():
    svc, clock = service()
    bus = FakeBus()
    svc.node.channels.bus = bus  # type: ignore[assignment]

    def new_view(view: ClusterView) -> None:
        for listener in svc.node.view_listeners:
            listener(clock.now, view)

    new_view(view_of("fe-b1", "fe-b2"))
    assert bus.sent == []  # nothing to send yet
    bus.down.add("fe-b2")
    body = {"targets": ["clientId:alice"]}
    status, _ = await call(svc, b"POST", "/keys/app.rev/revokeTokens", body, basic(REVOCABLE))
    assert status == 200 and sorted(p for p, _ in bus.sent) == ["fe-b1", "fe-b2"]
    record = bus.sent[0][1]
    # fe-b2 missed it: re-sent the whole list once its retry is due, until it takes it.
    assert svc.revoker.next_deadline() == clock.now + RETRY_MS
    bus.sent.clear()
    svc.revoker.tick(clock.now + RETRY_MS - 1)
    assert bus.sent == []
    svc.revoker.tick(clock.now + RETRY_MS)
    assert bus.sent == [("fe-b2", record)] and svc.revoker.next_deadline() == clock.now + RETRY_MS
    bus.down.clear()
    clock.now += RETRY_MS
    svc.revoker.tick(clock.now + RETRY_MS)
    assert bus.sent[-1] == ("fe-b2", record) and svc.revoker.next_deadline() is None
    # A frontend that comes alive in the map (new, or back) is sent the whole list.
    bus.sent.clear()
    new_view(view_of("fe-b1", "fe-b2", "fe-c1"))
    new_view(view_of("fe-b2", "fe-c1", dead=("fe-b1",)))
    new_view(view_of("fe-b1", "fe-b2", "fe-c1"))
    assert bus.sent == [("fe-c1", record), ("fe-b1", record)]
    # A peer that left the map is not retried: it gets the list when it comes back.
    bus.down.add("fe-c1")
    clock.now += 1
    status, _ = await call(svc, b"POST", "/keys/app.rev/revokeTokens", body, basic(REVOCABLE))
    new_view(view_of("fe-b1", "fe-b2", dead=("fe-c1",)))
    bus.sent.clear()
    svc.revoker.tick(clock.now + RETRY_MS)
    assert bus.sent == [] and svc.revoker.next_deadline() is None
