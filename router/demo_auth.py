"""Tokens for the demo page (``GET /demo/token``): short-lived Ably JWTs signed with ``demo_key``.

The browser never sees an API key. The router holds one (``RouterConfig.demo_key``, which the
frontends also have in their ``[keys]``) and signs, per request, an HS256 JWT of the shape the
frontends verify (``frontend/auth.py``): ``kid`` = the key name, ``exp``, ``x-ably-clientId`` = the
name the visitor picked, and ``x-ably-capability`` limited to the demo's channels, intersected by
the frontend with the key's own capability. ably-js fetches it from its ``authCallback`` and renews
it on 40142.

Pure: ``now_s`` comes in.
"""

from __future__ import annotations

import json
import re
import warnings

import jwt
from jwt.warnings import InsecureKeyLengthWarning

DEMO_CHANNELS = "demo:*"
DEMO_CAPABILITY = {DEMO_CHANNELS: ["publish", "subscribe", "history"]}
TOKEN_TTL_S = 3600
CLIENT_ID = re.compile(r"^[\w .@-]{1,40}$")


class BadClientId(ValueError):
    """The requested clientId is empty, too long or has characters a demo name never needs."""


def mint_token(demo_key: str, client_id: str, now_s: float, ttl_s: int = TOKEN_TTL_S) -> str:
    """A JWT for ``client_id`` valid ``ttl_s`` from ``now_s``, signed with ``demo_key``
    (``appId.keyId:secret``). Raise BadClientId for a name outside ``CLIENT_ID``."""
    if not CLIENT_ID.match(client_id) or client_id.strip() != client_id:
        raise BadClientId("clientId must be 1-40 letters, digits, spaces or . @ _ - (no edge spaces)")
    name, _, secret = demo_key.partition(":")
    claims = {
        "iat": int(now_s),
        "exp": int(now_s) + ttl_s,
        "x-ably-clientId": client_id,
        "x-ably-capability": json.dumps(DEMO_CAPABILITY),
    }
    with warnings.catch_warnings():
        # The length policy is RouterConfig's (32 bytes outside dev mode), not a warning per token.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": name})
