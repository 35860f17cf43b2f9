"""Connection keys (signing, forgery, rotation) and credential verification."""

import json
import random

import jwt
import pytest

from frontend.auth import ApiKey, Authenticator, AuthError, allows, intersect, parse_capability
from kernel.errors import ErrorCode
from kernel.keys import ConnectionKey, InvalidKey, KeySigner, new_connection_id

KEY = ConnectionKey(owner="fe-a1", secondary="fe-b1", connection_id="AbC_-123xyz", epoch=3)


def test_sign_verify_round_trip_and_url_safety():
    signer = KeySigner(["s" * 16])
    text = signer.sign(KEY)
    assert signer.verify(text) == KEY
    assert all(c.isalnum() or c in "._-" for c in text)
    assert text.startswith("fe-a1.fe-b1.AbC_-123xyz.3.")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.replace(".3.", ".4."),  # bumped epoch
        lambda t: t.replace("fe-a1", "fe-a2"),  # other owner
        lambda t: t.replace("AbC_", "XbC_"),  # other connection
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # tampered mac
        lambda t: t.rpartition(".")[0],  # truncated
        lambda t: t + ".x",
        lambda t: "",
        lambda t: "a" * 500,
        lambda t: t.replace(".", ":"),
    ],
)
def test_forged_or_malformed_keys_are_refused(mutate):
    signer = KeySigner(["s" * 16])
    with pytest.raises(InvalidKey):
        signer.verify(mutate(signer.sign(KEY)))


def test_key_signed_with_another_secret_is_refused_but_rotation_accepts_old():
    old = KeySigner(["old-secret-000000"])
    with pytest.raises(InvalidKey):
        KeySigner(["new-secret-000000"]).verify(old.sign(KEY))
    assert KeySigner(["new-secret-000000", "old-secret-000000"]).verify(old.sign(KEY)) == KEY


def test_connection_ids_are_unique_and_separator_free():
    rng = random.Random(1)
    ids = {new_connection_id(rng) for _ in range(1000)}
    assert len(ids) == 1000
    assert not any("." in i or ":" in i for i in ids)


def test_capability_matching():
    cap = parse_capability({"chat:*": ["publish", "subscribe"], "news": ["subscribe"]})
    assert allows(cap, "chat:room", "publish")
    assert allows(cap, "news", "subscribe")
    assert not allows(cap, "news", "publish")
    assert not allows(cap, "other", "subscribe")
    assert allows(parse_capability('{"*":["*"]}'), "x", "publish")
    with pytest.raises(ValueError):
        parse_capability({"x": ["fly"]})
    with pytest.raises(ValueError):
        parse_capability({})


def test_token_capability_is_restricted_by_the_key():
    outer = parse_capability({"chat:*": ["subscribe"]})
    inner = parse_capability({"*": ["publish", "subscribe"]})
    got = intersect(outer, inner)
    assert not allows(got, "chat:a", "publish")


SECRET = "key-secret-0123456789-0123456789-abcdefgh"
AUTH = Authenticator({"app.k": ApiKey("app.k", SECRET, parse_capability({"*": ["*"]}))})
NOW_MS = 1_700_000_000_000


def token(exp_s=NOW_MS // 1000 + 60, kid="app.k", secret=SECRET, **claims):
    payload = {"exp": exp_s, **claims}
    return jwt.encode(payload, secret, algorithm="HS256", headers={"kid": kid})


def test_basic_key_auth():
    ident = AUTH.authenticate(NOW_MS, key=f"app.k:{SECRET}", token=None, client_id="bob")
    assert ident.key_name == "app.k" and ident.client_id == "bob"
    with pytest.raises(AuthError) as e:
        AUTH.authenticate(NOW_MS, key="app.k:wrong", token=None, client_id=None)
    assert e.value.code is ErrorCode.INVALID_CREDENTIALS
    with pytest.raises(AuthError):
        AUTH.authenticate(NOW_MS, key="app.nope:x", token=None, client_id=None)
    with pytest.raises(AuthError) as e:
        AUTH.authenticate(NOW_MS, key=None, token=None, client_id=None)
    assert e.value.code is ErrorCode.UNAUTHORIZED


def test_jwt_auth_claims_and_token_errors_are_4014x():
    cap = json.dumps({"chat:*": ["subscribe"]})
    ident = AUTH.authenticate(
        NOW_MS, key=None, token=token(**{"x-ably-capability": cap, "x-ably-clientId": "amy"}), client_id=None
    )
    assert ident.client_id == "amy"
    assert allows(ident.capability, "chat:1", "subscribe") and not allows(
        ident.capability, "chat:1", "publish"
    )
    for bad, code in [
        (token(exp_s=NOW_MS // 1000 - 1), ErrorCode.TOKEN_EXPIRED),
        (token(secret="forged-secret-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxx"), ErrorCode.TOKEN_UNRECOGNISED),
        (token(kid="app.other"), ErrorCode.TOKEN_UNRECOGNISED),
        ("not-a-jwt", ErrorCode.TOKEN_UNRECOGNISED),
    ]:
        with pytest.raises(AuthError) as e:
            AUTH.authenticate(NOW_MS, key=None, token=bad, client_id=None)
        assert e.value.code is code
        assert 40140 <= int(code) < 40150


def test_client_id_param_must_match_token():
    with pytest.raises(AuthError) as e:
        AUTH.authenticate(NOW_MS, key=None, token=token(**{"x-ably-clientId": "amy"}), client_id="bob")
    assert e.value.code is ErrorCode.INVALID_CLIENT_ID


def test_dev_mode_accepts_anything_with_full_capability():
    dev = Authenticator({}, dev=True)
    ident = dev.authenticate(NOW_MS, key="whatever:x", token=None, client_id=None)
    assert allows(ident.capability, "any", "publish")
    assert dev.authenticate(NOW_MS, key=None, token="opaque", client_id=None).key_name == "dev"
