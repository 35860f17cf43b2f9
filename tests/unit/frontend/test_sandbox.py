"""The dev-mode sandbox (frontend.sandbox): self-verifying keys and the /apps, /stats replies."""

from __future__ import annotations

import base64
import json

import pytest

from frontend.auth import Authenticator, AuthError, allows
from frontend.sandbox import SandboxKeys, canonical_capability, handle
from kernel.errors import ErrorCode

SECRET = "sandbox-test-cluster-secret-0123456789"
SPEC = {
    "keys": [
        {},
        {"capability": '{ "cansubscribe:*":["subscribe"], "canpublish:*":["publish"] }'},
        {"capability": '{ "*":["subscribe"] }'},
        {"revocableTokens": True},
    ],
    "namespaces": [{"id": "persisted", "persisted": True}],
    "channels": [{"name": "persisted:presence_fixtures", "presence": [{"clientId": "a", "data": "x"}]}],
}


def _create(keys: SandboxKeys, spec: object = SPEC, host: str = "127.0.0.1:8080") -> dict:
    status, reply = handle(keys, "POST", "/apps", {"host": host}, {}, json.dumps(spec).encode())
    assert status == 201, reply
    assert reply is not None
    return reply


def _basic(key_str: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(key_str.encode()).decode()}


def test_create_app_returns_the_keys_asked_with_their_capabilities() -> None:
    keys = SandboxKeys([SECRET])
    reply = _create(keys)
    assert reply["appId"].startswith("sbx")
    assert (reply["endpoint"], reply["port"], reply["tls"]) == ("127.0.0.1", 8080, False)
    assert len(reply["keys"]) == 4
    assert reply["namespaces"] == SPEC["namespaces"]
    assert reply["channels"] == SPEC["channels"]
    caps = [json.loads(k["capability"]) for k in reply["keys"]]
    assert caps == [
        {"*": ["*"]},
        {"canpublish:*": ["publish"], "cansubscribe:*": ["subscribe"]},
        {"*": ["subscribe"]},
        {"*": ["*"]},
    ]
    assert reply["keys"][3]["revocableTokens"] is True
    names = [k["keyName"] for k in reply["keys"]]
    assert len(set(names)) == 4, "two keys with one capability are still distinct keys"
    for k in reply["keys"]:
        assert k["keyStr"] == f"{k['keyName']}:{k['keySecret']}"
        assert k["keyName"].split(".")[0] == reply["appId"]


def test_a_key_minted_by_one_frontend_verifies_on_another_with_the_same_cluster_secret() -> None:
    reply = _create(SandboxKeys([SECRET]))
    other = SandboxKeys([SECRET])
    rotated = SandboxKeys(["a-new-cluster-secret-0123456789", SECRET])
    stranger = SandboxKeys(["another-cluster-secret-0123456789"])
    key_str = reply["keys"][1]["keyStr"]
    decoded = other.verify(key_str)
    assert decoded is not None and decoded.app_id == reply["appId"]
    assert allows(decoded.capability, "canpublish:x", "publish")
    assert not allows(decoded.capability, "canpublish:x", "subscribe")
    assert rotated.verify(key_str) is not None, "an old cluster secret still verifies while rotating"
    assert stranger.verify(key_str) is None


def test_forged_names_and_secrets_are_refused() -> None:
    keys = SandboxKeys([SECRET])
    reply = _create(keys)
    full, narrow = reply["keys"][0], reply["keys"][2]
    # The narrow key's secret with the full key's name, and the reverse.
    assert keys.verify(f"{full['keyName']}:{narrow['keySecret']}") is None
    assert keys.verify(f"{narrow['keyName']}:{full['keySecret']}") is None
    # A name edited to carry another capability no longer matches its secret.
    app = narrow["keyName"].partition(".")[0]
    forged = keys.mint(app, 2, {"*": frozenset({"*"})}, False)
    assert keys.verify(f"{forged.name}:{narrow['keySecret']}") is None
    assert keys.verify(narrow["keyName"]) is None, "a name without its secret"
    for junk in ("", "x", "sbx0123456789.c!!!!:s", f"{app}.cAAAA:s"):
        assert keys.verify(junk) is None
        assert keys.resolve(junk.partition(":")[0]) is None


def test_dev_mode_authenticator_applies_a_sandbox_key_capability_and_checks_its_secret() -> None:
    keys = SandboxKeys([SECRET])
    reply = _create(keys)
    auth = Authenticator({}, dev=True, extra_keys=keys.resolve)
    narrow = reply["keys"][2]
    ident = auth.authenticate(0, key=narrow["keyStr"], token=None, client_id=None)
    assert ident.key_name == narrow["keyName"]
    assert allows(ident.capability, "any", "subscribe")
    assert not allows(ident.capability, "any", "publish")
    with pytest.raises(AuthError) as exc:
        auth.authenticate(0, key=narrow["keyName"] + ":wrong", token=None, client_id=None)
    assert exc.value.code == ErrorCode.INVALID_CREDENTIALS
    # Any other key keeps dev mode's full capability.
    ident = auth.authenticate(0, key="app.key:whatever", token=None, client_id=None)
    assert allows(ident.capability, "any", "publish")


def test_delete_needs_a_key_of_that_app() -> None:
    keys = SandboxKeys([SECRET])
    one, two = _create(keys), _create(keys)
    path = f"/apps/{one['appId']}"
    assert handle(keys, "DELETE", path, _basic(one["keys"][0]["keyStr"]), {}, b"") == (204, None)
    status, reply = handle(keys, "DELETE", path, _basic(two["keys"][0]["keyStr"]), {}, b"")
    assert status == 401 and reply is not None and reply["error"]["code"] == 40160
    status, reply = handle(keys, "DELETE", path, {}, {}, b"")
    assert status == 401 and reply is not None and reply["error"]["code"] == 40100
    status, reply = handle(keys, "DELETE", path, _basic(one["keys"][0]["keyName"] + ":bad"), {}, b"")
    assert status == 401 and reply is not None and reply["error"]["code"] == 40101
    status, _ = handle(keys, "DELETE", "/apps/not-an-app", _basic(one["keys"][0]["keyStr"]), {}, b"")
    assert status == 404


@pytest.mark.parametrize(
    "body, message",
    [
        (b"{", "not JSON"),
        (b"[]", "JSON object"),
        (json.dumps({"keys": {}}).encode(), "'keys'"),
        (json.dumps({"keys": [{"capability": "{}"}]}).encode(), "key 0"),
        (json.dumps({"keys": [{"capability": '{"*":["fly"]}'}]}).encode(), "unknown operations"),
        (json.dumps({"namespaces": [{}]}).encode(), "namespace"),
        (json.dumps({"keys": [{}] * 33}).encode(), "at most"),
    ],
)
def test_bad_app_specs_get_40000(body: bytes, message: str) -> None:
    status, reply = handle(SandboxKeys([SECRET]), "POST", "/apps", {}, {}, body)
    assert status == 400 and reply is not None
    assert reply["error"]["code"] == 40000 and message in reply["error"]["message"]


def test_stats_fixtures_are_validated_against_a_key_of_an_app() -> None:
    keys = SandboxKeys([SECRET])
    key_str = _create(keys)["keys"][0]["keyStr"]
    fixtures = [{"intervalId": "2013-01-01:00:00", "inbound": {}}, {"intervalId": "2013-01-01:01:00"}]
    status, reply = handle(keys, "POST", "/stats", _basic(key_str), {}, json.dumps(fixtures).encode())
    assert (status, reply) == (201, {"accepted": 2})
    status, _ = handle(keys, "POST", "/stats", {}, {"key": key_str}, b"[]")
    assert status == 201
    status, reply = handle(keys, "POST", "/stats", _basic(key_str), {}, b'[{"no": 1}]')
    assert status == 400
    status, _ = handle(keys, "POST", "/stats", _basic("app.key:secret"), {}, b"[]")
    assert status == 401


def test_canonical_capability_sorts_resources_and_operations() -> None:
    cap = {"b": frozenset({"subscribe", "publish"}), "a": frozenset({"*"})}
    assert canonical_capability(cap) == '{"a":["*"],"b":["publish","subscribe"]}'


def test_dev_mode_can_refuse_unknown_keys_and_still_take_sandbox_and_configured_ones() -> None:
    from frontend.auth import ApiKey

    keys = SandboxKeys([SECRET])
    reply = _create(keys)
    configured = {"app.conf": ApiKey("app.conf", "s3cret", {"*": frozenset({"*"})})}
    auth = Authenticator(configured, dev=True, extra_keys=keys.resolve, accept_any_key=False)
    with pytest.raises(AuthError) as exc:
        auth.authenticate(0, key="this.is:wrong", token=None, client_id=None)
    assert exc.value.code == ErrorCode.INVALID_CREDENTIALS
    assert auth.authenticate(0, key=reply["keys"][0]["keyStr"], token=None, client_id=None)
    assert auth.authenticate(0, key="app.conf:anything", token=None, client_id=None).key_name == "app.conf"


def test_tokens_of_a_sandbox_key_carry_its_capability() -> None:
    from frontend.tokens import TokenAuthenticator

    keys = SandboxKeys([SECRET])
    narrow = _create(keys)["keys"][2]  # {"*": ["subscribe"]}
    auth = TokenAuthenticator({}, dev=True, extra_keys=keys.resolve, accept_any_key=False)
    key = auth.key_for(narrow["keyName"])
    assert key is not None and key.secret == narrow["keySecret"]
    assert allows(key.capability, "x", "subscribe") and not allows(key.capability, "x", "publish")
    assert auth.key_for("app.unknown", "s") is None  # unknown keys are refused here
    assert TokenAuthenticator({}, dev=True).key_for("app.unknown", "s") is not None  # any key
