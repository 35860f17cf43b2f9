"""Who a REST request is: Basic (an API key) or Bearer (a native token or a JWT), as the SDKs send.

``Authorization: Basic base64(keyName:secret)`` (RSA1), ``Authorization: Bearer base64(token)``
(RSA3b; a token that is not valid base64 is taken as sent), or the ``key`` / ``access_token``
query parameters. With a key, ``X-Ably-ClientId: base64(clientId)`` names the clientId the
client assumes (RSA7e2). Pure: the authenticator does the verifying.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from frontend.auth import Authenticator, AuthError, Identity
from frontend.rest.wire import RestRequest
from kernel.errors import ErrorCode


@dataclass(frozen=True, slots=True)
class Credentials:
    key: str | None = None
    token: str | None = None
    client_id: str | None = None

    @property
    def key_name(self) -> str | None:
        return None if self.key is None else self.key.partition(":")[0]

    @property
    def key_secret(self) -> str | None:
        return None if self.key is None else self.key.partition(":")[2]


def _b64_text(raw: str) -> str | None:
    try:
        return base64.b64decode(raw.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def credentials(req: RestRequest) -> Credentials:
    """The credentials a request carries; AuthError 40101 for an Authorization header we cannot read."""
    client_header = req.header(b"x-ably-clientid")
    client_id = _b64_text(client_header) if client_header else None
    if client_header and client_id is None:
        raise AuthError(ErrorCode.INVALID_CLIENT_ID, "X-Ably-ClientId must be base64")
    auth = req.header(b"authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            key = _b64_text(value)
            if key is None or ":" not in key:
                raise AuthError(ErrorCode.INVALID_CREDENTIALS, "Basic credentials must be base64(key:secret)")
            return Credentials(key=key, client_id=client_id)
        if scheme.lower() == "bearer" and value.strip():
            return Credentials(token=_b64_text(value) or value.strip())
        raise AuthError(ErrorCode.INVALID_CREDENTIALS, "Authorization must be Basic or Bearer")
    if req.params.get("key"):
        return Credentials(key=req.params["key"], client_id=client_id)
    query_token = req.params.get("access_token") or req.params.get("accessToken")
    if query_token:
        return Credentials(token=query_token)
    return Credentials(client_id=client_id)


def identify(auth: Authenticator, now_ms: int, creds: Credentials) -> Identity:
    """Verify ``creds``; AuthError (4014x for token problems, so SDKs renew) otherwise."""
    return auth.authenticate(now_ms, key=creds.key, token=creds.token, client_id=creds.client_id)
