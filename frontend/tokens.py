"""Native Ably tokens: signed TokenRequests in, self-contained MAC'd tokens out.

Theory of operation
-------------------
``POST /keys/{keyName}/requestToken`` takes either a *signed TokenRequest* (made
by ``createTokenRequest`` with the key secret; anyone may post it) or plain
TokenParams on a request authenticated with the key itself. A TokenRequest's
``mac`` is the base64 HMAC-SHA256, keyed by the key secret, of
``keyName\\nttl\\ncapability\\nclientId\\ntimestamp\\nnonce\\n`` (the fields as
sent, empty when absent). Its ``timestamp`` must be within ``CLOCK_WINDOW_MS``
of ours, and its ``(keyName, nonce)`` must not have been used inside that
window (``NonceMemory``): a captured request cannot be replayed.

The token itself carries everything needed to verify it, so any frontend that
holds the key verifies it with no shared store: ``ctk1.<payload>.<mac>`` where
payload is base64url JSON ``{k: keyName, i: issued, x: expires, c: capability,
u: clientId}`` and mac the base64url HMAC-SHA256 of ``ctk1.<payload>`` keyed by
a secret derived from the key secret. A token whose key is gone from the
configuration (revoked) or whose MAC fails is refused (40101 / 40144); past its
expiry it is answered 40142, which makes the SDKs fetch a new one.

The token's capability is the requested one intersected with the key's (empty
intersection: 40160); its clientId is bound (``*`` allowed: any clientId).
Pure: ``now_ms`` comes in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from frontend.auth import (
    FULL_CAPABILITY,
    KNOWN_OPERATIONS,
    ApiKey,
    Authenticator,
    AuthError,
    Capability,
    Identity,
    intersect,
    parse_capability,
)
from frontend.revocation import RevocationList
from kernel.errors import ErrorCode

PREFIX = "ctk1"
CLOCK_WINDOW_MS = 10 * 60 * 1000
DEFAULT_TTL_MS = 60 * 60 * 1000
MAX_TTL_MS = 24 * 60 * 60 * 1000
MIN_TTL_MS = 1  # Ably takes any positive ttl (the SDK suites ask for 1 ms to get an expired token)
MAX_CLIENT_ID = 512


def is_native(token: str) -> bool:
    return token.startswith(PREFIX + ".")


def capability_text(cap: Capability) -> str:
    """Canonical JSON of a capability: resources and their operations sorted (as the sandbox's
    app reply lists a key's capability, which the SDK suites compare tokens with)."""
    return json.dumps({k: sorted(cap[k]) for k in sorted(cap)}, separators=(",", ":"))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _token_secret(key: ApiKey) -> bytes:
    # Domain separation: a token MAC is never a TokenRequest MAC or a JWT signature.
    return hmac.new(key.secret.encode(), b"continuity token v1", hashlib.sha256).digest()


def request_mac(secret: str, fields: Mapping[str, Any]) -> str:
    """The MAC of a TokenRequest, as ``createTokenRequest`` computes it."""

    def text(name: str) -> str:
        v = fields.get(name)
        return "" if v is None else str(v)

    sign = "".join(f"{text(n)}\n" for n in ("keyName", "ttl", "capability", "clientId", "timestamp", "nonce"))
    return base64.b64encode(hmac.new(secret.encode(), sign.encode(), hashlib.sha256).digest()).decode()


@dataclass(frozen=True, slots=True)
class TokenDetails:
    token: str
    key_name: str
    issued_ms: int
    expires_ms: int
    capability: str  # canonical JSON
    client_id: str | None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "token": self.token,
            "keyName": self.key_name,
            "issued": self.issued_ms,
            "expires": self.expires_ms,
            "capability": self.capability,
        }
        if self.client_id is not None:
            out["clientId"] = self.client_id
        return out


class NonceMemory:
    """The nonces of signed TokenRequests seen within the clock window (per frontend)."""

    def __init__(self, *, window_ms: int = CLOCK_WINDOW_MS, max_entries: int = 200_000) -> None:
        self.window_ms = window_ms
        self.max_entries = max_entries
        self._seen: set[tuple[str, str]] = set()
        self._order: deque[tuple[int, tuple[str, str]]] = deque()

    def first_use(self, now_ms: int, key_name: str, nonce: str) -> bool:
        """Record ``nonce``; False when it was used already."""
        while self._order and (
            self._order[0][0] <= now_ms - 2 * self.window_ms or len(self._order) > self.max_entries
        ):
            self._seen.discard(self._order.popleft()[1])
        item = (key_name, nonce)
        if item in self._seen:
            return False
        self._seen.add(item)
        self._order.append((now_ms, item))
        return True


def _ttl(raw: object) -> int:
    if raw in (None, ""):
        return DEFAULT_TTL_MS
    try:
        ttl = int(str(raw))
    except ValueError:
        raise AuthError(ErrorCode.INVALID_PARAMETER, f"ttl must be a number of ms, not {raw!r}") from None
    if not MIN_TTL_MS <= ttl <= MAX_TTL_MS:
        raise AuthError(ErrorCode.INVALID_PARAMETER, f"ttl must be {MIN_TTL_MS}..{MAX_TTL_MS} ms")
    return ttl


def _capability(key: ApiKey, raw: object) -> Capability:
    if raw in (None, ""):
        return key.capability
    try:
        loaded = json.loads(raw) if isinstance(raw, str) else raw
        if isinstance(loaded, Mapping) and any(
            isinstance(ops, list) and "*" in ops and len(ops) > 1 for ops in loaded.values()
        ):
            raise ValueError("'*' stands alone in an operation list")
        requested = parse_capability(loaded)
    except (ValueError, TypeError) as exc:
        raise AuthError(ErrorCode.INVALID_PARAMETER, f"invalid capability: {exc}") from None
    granted = {
        res: (frozenset({"*"}) if ops >= KNOWN_OPERATIONS - {"*"} else ops)
        for res, ops in intersect(key.capability, requested).items()
    }
    if not granted:
        raise AuthError(ErrorCode.CAPABILITY_DENIED, "requested capability is not permitted by the key")
    return granted


def _client_id(raw: object) -> str | None:
    if raw in (None, ""):
        return None
    if not isinstance(raw, str) or len(raw) > MAX_CLIENT_ID:
        raise AuthError(ErrorCode.INVALID_CLIENT_ID, "clientId must be a string of at most 512 characters")
    return raw


def issue(now_ms: int, key: ApiKey, params: Mapping[str, Any]) -> TokenDetails:
    """Mint a token for ``key`` from TokenParams (ttl, capability, clientId)."""
    ttl = _ttl(params.get("ttl"))
    capability = capability_text(_capability(key, params.get("capability")))
    client_id = _client_id(params.get("clientId"))
    payload = {"k": key.name, "i": now_ms, "x": now_ms + ttl, "c": capability, "u": client_id}
    body = f"{PREFIX}.{_b64url(json.dumps(payload, separators=(',', ':')).encode())}"
    mac = _b64url(hmac.new(_token_secret(key), body.encode(), hashlib.sha256).digest())
    return TokenDetails(f"{body}.{mac}", key.name, now_ms, now_ms + ttl, capability, client_id)


def verify_request(now_ms: int, key: ApiKey, request: Mapping[str, Any]) -> str:
    """Verify a signed TokenRequest's MAC and clock window for ``key``; return its nonce."""
    mac = request.get("mac")
    if not isinstance(mac, str) or not hmac.compare_digest(mac, request_mac(key.secret, request)):
        raise AuthError(ErrorCode.INVALID_CREDENTIALS, "token request MAC does not verify")
    try:
        ts = int(str(request.get("timestamp")))
    except ValueError:
        raise AuthError(ErrorCode.TIMESTAMP_NOT_CURRENT, "token request has no timestamp") from None
    if abs(now_ms - ts) > CLOCK_WINDOW_MS:
        raise AuthError(ErrorCode.TIMESTAMP_NOT_CURRENT, "token request timestamp is not current")
    nonce = request.get("nonce")
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 256:
        raise AuthError(ErrorCode.INVALID_PARAMETER, "token request nonce must have 16..256 characters")
    return nonce


def check_request(now_ms: int, key: ApiKey, request: Mapping[str, Any], nonces: NonceMemory) -> None:
    """Verify a signed TokenRequest for ``key``: MAC, clock window, and a nonce never used."""
    nonce = verify_request(now_ms, key, request)
    if not nonces.first_use(now_ms, key.name, nonce):
        raise AuthError(ErrorCode.NONCE_REPLAYED, "token request nonce was used already")


def verify(now_ms: int, token: str, lookup: Callable[[str], ApiKey | None], *, dev: bool = False) -> Identity:
    """The Identity a native token grants; AuthError when forged, revoked or expired."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise AuthError(ErrorCode.TOKEN_UNRECOGNISED, "malformed token")
    try:
        payload = json.loads(_unb64url(parts[1]))
        key_name = payload["k"]
        expires = int(payload["x"])
        cap_text = payload["c"]
    except (ValueError, KeyError, TypeError):
        raise AuthError(ErrorCode.TOKEN_UNRECOGNISED, "malformed token") from None
    key = lookup(key_name) if isinstance(key_name, str) else None
    if key is None and dev and isinstance(key_name, str):
        # Dev mode accepts any key, so its tokens too (their secret is not configured anywhere).
        cid = payload.get("u")
        if expires <= now_ms:
            raise AuthError(ErrorCode.TOKEN_EXPIRED, "token expired")
        cap = parse_capability(cap_text)
        return Identity(key_name, cid if isinstance(cid, str) else None, cap, expires, _issued(payload))
    if key is None:
        raise AuthError(ErrorCode.INVALID_CREDENTIALS, "the token's key is unknown or revoked")
    expected = _b64url(
        hmac.new(_token_secret(key), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    )
    if not hmac.compare_digest(expected, parts[2]):
        raise AuthError(ErrorCode.TOKEN_UNRECOGNISED, "token signature does not verify")
    if expires <= now_ms:
        raise AuthError(ErrorCode.TOKEN_EXPIRED, "token expired")
    client_id = payload.get("u")
    # Re-intersect with the key as configured now: a key narrowed since issue narrows its tokens.
    capability = intersect(key.capability, parse_capability(cap_text))
    return Identity(
        key.name, client_id if isinstance(client_id, str) else None, capability, expires, _issued(payload)
    )


def _issued(payload: Mapping[str, Any]) -> int:
    issued = payload.get("i")
    return issued if isinstance(issued, int) else 0


class TokenAuthenticator(Authenticator):
    """The Authenticator that also accepts native tokens (``ctk1.``), besides keys and JWTs, and
    refuses tokens its ``revocations`` revoke (40141), whatever their kind."""

    def __init__(self, keys: Mapping[str, ApiKey], **kwargs: Any) -> None:
        super().__init__(keys, **kwargs)
        self.revocations = RevocationList()

    def authenticate(
        self, now_ms: int, *, key: str | None, token: str | None, client_id: str | None
    ) -> Identity:
        ident = super().authenticate(now_ms, key=key, token=token, client_id=client_id)
        if token and self.revocations.revoked(now_ms, ident) is not None:
            raise AuthError(ErrorCode.TOKEN_REVOKED, "token revoked")
        return ident

    @property
    def keys(self) -> Mapping[str, ApiKey]:
        # The base class's table (keys added to it later count here too) plus the keys its
        # extra_keys resolve (the dev-mode sandbox's, with their own secret and capability).
        return _KnownKeys(self)

    @property
    def dev(self) -> bool:
        """Dev mode that takes unknown keys (and their tokens) with full capability."""
        return self._dev and self._any_key

    def key_for(self, key_name: str, secret: str | None = None) -> ApiKey | None:
        """The key by that name (configured, or resolved like the sandbox's self-verifying keys,
        through the base class's lookup); in dev mode any other key, with the secret its caller
        showed, full capability and revocable tokens."""
        key = self._lookup(key_name)
        if key is None and self.dev:
            return ApiKey(key_name, secret or "", FULL_CAPABILITY, revocable_tokens=True)
        return key

    def _verify_token(self, now_ms: int, token: str) -> Identity:
        if is_native(token):
            return verify(now_ms, token, self._lookup, dev=self.dev)
        return super()._verify_token(now_ms, token)


class _KnownKeys(Mapping[str, ApiKey]):
    """A read-only view: the authenticator's configured keys, and any name its ``lookup`` resolves."""

    def __init__(self, auth: Authenticator) -> None:
        self._auth = auth

    def __getitem__(self, name: str) -> ApiKey:
        key = self._auth.lookup(name)
        if key is None:
            raise KeyError(name)
        return key

    def __iter__(self) -> Iterator[str]:
        return iter(self._auth.key_names())

    def __len__(self) -> int:
        return len(self._auth.key_names())
