"""Demo tokens (router/demo_auth.py) are Ably JWTs the frontends' Authenticator accepts as issued."""

from __future__ import annotations

import pytest

from frontend.auth import FULL_CAPABILITY, ApiKey, Authenticator, AuthError, allows
from kernel.errors import ErrorCode
from router.config import ConfigError, RouterConfig
from router.demo_auth import TOKEN_TTL_S, BadClientId, mint_token

SECRET = "demo-secret-at-least-32-bytes-long-0123"
DEMO_KEY = f"demo.browser:{SECRET}"
NOW_S = 1_700_000_000


def authenticator(secret: str = SECRET) -> Authenticator:
    return Authenticator({"demo.browser": ApiKey("demo.browser", secret, FULL_CAPABILITY)})


def test_a_token_carries_the_name_and_only_the_demo_channels() -> None:
    token = mint_token(DEMO_KEY, "alice", NOW_S)
    ident = authenticator().authenticate(NOW_S * 1000, key=None, token=token, client_id=None)
    assert ident.client_id == "alice"
    assert ident.key_name == "demo.browser"
    assert ident.expires_ms == (NOW_S + TOKEN_TTL_S) * 1000
    assert allows(ident.capability, "demo:lobby", "publish")
    assert allows(ident.capability, "demo:lobby", "subscribe")
    assert not allows(ident.capability, "private:ops", "subscribe")


def test_a_token_expires_and_needs_the_right_secret() -> None:
    token = mint_token(DEMO_KEY, "alice", NOW_S)
    with pytest.raises(AuthError) as expired:
        authenticator().authenticate((NOW_S + TOKEN_TTL_S) * 1000, key=None, token=token, client_id=None)
    assert expired.value.code is ErrorCode.TOKEN_EXPIRED
    with pytest.raises(AuthError) as forged:
        authenticator("another-secret-at-least-32-bytes-long").authenticate(
            NOW_S * 1000, key=None, token=token, client_id=None
        )
    assert forged.value.code is ErrorCode.TOKEN_UNRECOGNISED


@pytest.mark.parametrize("name", ["", " alice", "a" * 41, "<script>", "bob\n"])
def test_odd_names_are_refused(name: str) -> None:
    with pytest.raises(BadClientId):
        mint_token(DEMO_KEY, name, NOW_S)


def test_router_config_wants_a_long_demo_secret_outside_dev_mode() -> None:
    short = "demo.browser:short"
    assert RouterConfig(dev=True, demo_key=short).demo_key == short
    with pytest.raises(ConfigError, match="32 bytes"):
        RouterConfig(cluster_secret="a-long-enough-cluster-secret", demo_key=short)
    with pytest.raises(ConfigError, match=r"appId\.keyId:secret"):
        RouterConfig(dev=True, demo_key="no-colon")
