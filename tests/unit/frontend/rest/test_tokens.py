"""Native tokens: signed TokenRequests (MAC, clock window, nonce) and self-contained tokens."""

import json

import pytest

from frontend.auth import ApiKey, AuthError, parse_capability
from frontend.tokens import (
    CLOCK_WINDOW_MS,
    NonceMemory,
    TokenAuthenticator,
    capability_text,
    check_request,
    issue,
    request_mac,
    verify,
)
from kernel.errors import ErrorCode

KEY = ApiKey("app.k", "s3cret-s3cret", parse_capability({"chat:*": ["publish", "subscribe"], "log": ["*"]}))
KEYS = {KEY.name: KEY}


def signed(ts: int, nonce: str = "n" * 16, **fields):
    req = {"keyName": KEY.name, "timestamp": ts, "nonce": nonce, **fields}
    req["mac"] = request_mac(KEY.secret, req)
    return req


def code_of(fn) -> int:
    with pytest.raises(AuthError) as exc:
        fn()
    return int(exc.value.code)


def test_a_signed_request_verifies_once_and_replays_are_refused():
    nonces = NonceMemory()
    req = signed(1000, capability='{"chat:*":["subscribe"]}', clientId="bob", ttl=60000)
    check_request(1000, KEY, req, nonces)
    assert code_of(lambda: check_request(1001, KEY, req, nonces)) == ErrorCode.NONCE_REPLAYED
    tampered = dict(signed(1000, nonce="m" * 16), clientId="mallory")
    assert code_of(lambda: check_request(1000, KEY, tampered, nonces)) == ErrorCode.INVALID_CREDENTIALS
    late = signed(0, nonce="o" * 16)
    assert code_of(lambda: check_request(CLOCK_WINDOW_MS + 1, KEY, late, nonces)) == (
        ErrorCode.TIMESTAMP_NOT_CURRENT
    )


def test_a_token_binds_clientid_and_capability_intersected_with_the_key():
    td = issue(
        0, KEY, {"capability": '{"chat:lobby":["publish","presence"],"other":["*"]}', "clientId": "bob"}
    )
    ident = verify(10, td.token, KEYS.get)
    assert ident.client_id == "bob" and ident.expires_ms == td.expires_ms
    assert dict(ident.capability) == {"chat:lobby": frozenset({"publish"})}
    assert td.capability == capability_text(ident.capability)
    assert code_of(lambda: issue(0, KEY, {"capability": '{"other":["*"]}'})) == ErrorCode.CAPABILITY_DENIED
    for bad_ttl in (0, -1, "notanumber", 365 * 24 * 3600 * 1000):
        assert code_of(lambda t=bad_ttl: issue(0, KEY, {"ttl": t})) == ErrorCode.INVALID_PARAMETER
    assert issue(0, KEY, {"ttl": 1}).expires_ms == 1


def test_expired_forged_and_revoked_tokens_fail_with_their_codes():
    td = issue(0, KEY, {"ttl": 5000})
    assert code_of(lambda: verify(5000, td.token, KEYS.get)) == ErrorCode.TOKEN_EXPIRED
    head, payload, mac = td.token.split(".")
    forged = f"{head}.{payload}.{mac[:-2]}AA"
    assert code_of(lambda: verify(1, forged, KEYS.get)) == ErrorCode.TOKEN_UNRECOGNISED
    assert code_of(lambda: verify(1, td.token, {}.get)) == ErrorCode.INVALID_CREDENTIALS
    assert code_of(lambda: verify(1, "ctk1.garbage", KEYS.get)) == ErrorCode.TOKEN_UNRECOGNISED


def test_the_authenticator_takes_native_tokens_beside_keys():
    auth = TokenAuthenticator(KEYS)
    td = issue(0, KEY, {"clientId": "bob"})
    assert auth.authenticate(1, key=None, token=td.token, client_id=None).client_id == "bob"
    assert code_of(lambda: auth.authenticate(1, key=None, token=td.token, client_id="eve")) == (
        ErrorCode.INVALID_CLIENT_ID
    )


KEY2 = ApiKey(
    "app.k2",
    "s",
    parse_capability(
        {
            "channel2": ["publish", "subscribe"],
            "channel4": ["presence", "publish", "subscribe"],
            "channel6": ["*"],
        }
    ),
)


@pytest.mark.parametrize(
    ("requested", "granted"),
    [
        (
            None,
            {
                "channel2": ["publish", "subscribe"],
                "channel4": ["presence", "publish", "subscribe"],
                "channel6": ["*"],
            },
        ),
        ({"channel2": ["presence", "subscribe"], "channelx": ["subscribe"]}, {"channel2": ["subscribe"]}),
        ({"channel2": ["*"]}, {"channel2": ["publish", "subscribe"]}),
        ({"channel6": ["subscribe", "publish"]}, {"channel6": ["publish", "subscribe"]}),
    ],
)
def test_intersections_list_operations_sorted(requested, granted):
    params = {} if requested is None else {"capability": json.dumps(requested)}
    assert json.loads(issue(0, KEY2, params).capability) == granted


@pytest.mark.parametrize("bad", [{"c": ["publish_"]}, {"c": ["*", "publish"]}, {"c": []}])
def test_an_invalid_capability_is_a_400(bad):
    assert code_of(lambda: issue(0, KEY2, {"capability": json.dumps(bad)})) == ErrorCode.INVALID_PARAMETER


def test_keys_resolved_by_the_base_lookup_issue_and_verify_tokens_even_in_dev_mode():
    # The dev-mode sandbox's self-verifying keys come through Authenticator's extra_keys.
    auth = TokenAuthenticator({}, dev=True, extra_keys={KEY2.name: KEY2}.get)
    key = auth.key_for(KEY2.name)
    assert key is KEY2  # its capability and secret, not a full-capability stand-in
    td = issue(0, key, {"capability": '{"channel2":["*"]}'})
    ident = auth.authenticate(1, key=None, token=td.token, client_id=None)
    assert dict(ident.capability) == {"channel2": frozenset({"publish", "subscribe"})}
    strict = TokenAuthenticator({}, dev=True, accept_any_key=False)
    assert strict.key_for("app.unknown") is None
    assert code_of(lambda: strict.authenticate(1, key=None, token=td.token, client_id=None)) == (
        ErrorCode.INVALID_CREDENTIALS
    )
