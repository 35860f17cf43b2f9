"""API keys, Ably-style capabilities, and verification of keys and JWT tokens.

Pure: ``now_ms`` comes in. Raises :class:`AuthError` carrying the in-band Ably
code (4014x for token problems, so SDKs renew: RTN14b, RTN15h2).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import jwt

from kernel.errors import ErrorCode, RefusedError

Capability = Mapping[str, frozenset[str]]
FULL_CAPABILITY: Capability = {"*": frozenset({"*"})}
# Identities of key-authenticated connections kept for sharing (``_key_identity``); past this
# many distinct (key, clientId) pairs the cache starts over.
KEY_IDENTITIES_KEPT = 10_000

KNOWN_OPERATIONS = frozenset(
    {
        "*",
        "publish",
        "subscribe",
        "presence",
        "history",
        "stats",
        "channel-metadata",
        "push-subscribe",
        "push-admin",
        "privileged-headers",
        "object-subscribe",
        "object-publish",
        "annotation-publish",
        "annotation-subscribe",
    }
)


class AuthError(RefusedError):
    """A key, token or capability refused (forged, expired, revoked, denied)."""


def parse_capability(raw: object) -> Capability:
    """Parse ``{"chat:*": ["publish"]}`` (a mapping or its JSON text). Raises ValueError."""
    if isinstance(raw, str):
        raw = json.loads(raw)
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError("a capability is a non-empty object of resource -> [operations]")
    out: dict[str, frozenset[str]] = {}
    for resource, ops in raw.items():
        if not isinstance(resource, str) or not isinstance(ops, list) or not ops:
            raise ValueError(f"capability entry {resource!r} must list operations")
        bad = [op for op in ops if op not in KNOWN_OPERATIONS]
        if bad:
            raise ValueError(f"unknown operations {bad} for {resource!r}")
        out[resource] = frozenset(ops)
    return out


def _matches(pattern: str, channel: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return channel.startswith(pattern[:-1])
    return pattern == channel


def allows(capability: Capability, channel: str, operation: str) -> bool:
    """True when ``capability`` grants ``operation`` on ``channel``."""
    for pattern, ops in capability.items():
        if _matches(pattern, channel) and ("*" in ops or operation in ops):
            return True
    return False


def intersect(outer: Capability, inner: Capability) -> Capability:
    """A token's capability restricted to what its key allows."""
    out: dict[str, frozenset[str]] = {}
    for pattern, ops in inner.items():
        granted: set[str] = set()
        for outer_pattern, outer_ops in outer.items():
            if _matches(outer_pattern, pattern.rstrip("*")) or outer_pattern == pattern:
                granted |= set(KNOWN_OPERATIONS - {"*"}) if "*" in outer_ops else set(outer_ops)
        effective = granted if "*" in ops else granted & set(ops)
        if effective:
            out[pattern] = frozenset(effective)
    return out


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str  # "appId.keyId"
    secret: str
    capability: Capability
    revocable_tokens: bool = False  # its tokens may be revoked (RSA17, frontend.revocation)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection is: what it may do and which clientId it carries."""

    key_name: str
    client_id: str | None  # None: anonymous; "*": may publish as anyone
    capability: Capability
    expires_ms: int | None = None
    issued_ms: int | None = None  # a token's issue time (None: key auth), for revocation
    revocation_key: str | None = None  # a JWT's x-ably-revocation-key claim


class Authenticator:
    """Verifies ``key=`` basic credentials and Ably JWTs against configured keys.

    ``extra_keys`` resolves names the config does not hold (the dev-mode sandbox's self-verifying
    keys, ``frontend.sandbox``); such a key is verified, and its capability applied, even in dev
    mode, where any other key is accepted with full capability unless ``accept_any_key`` is false
    (then only configured and extra keys are, as outside dev mode).
    """

    def __init__(
        self,
        keys: Mapping[str, ApiKey],
        *,
        dev: bool = False,
        extra_keys: Callable[[str], ApiKey | None] | None = None,
        accept_any_key: bool = True,
    ) -> None:
        self._keys = dict(keys)
        self._dev = dev
        self._any_key = accept_any_key
        self._extra_keys = extra_keys
        self._key_identities: dict[tuple[str, str | None], Identity] = {}

    def lookup(self, name: str) -> ApiKey | None:
        """The configured key named ``name``, or the one ``extra_keys`` resolves, or None."""
        return self._lookup(name)

    @property
    def accepts_any_key(self) -> bool:
        """Dev mode that takes keys it does not know (with full capability)."""
        return self._dev and self._any_key

    def _lookup(self, name: str) -> ApiKey | None:
        key = self._keys.get(name)
        if key is None and self._extra_keys is not None:
            key = self._extra_keys(name)
        return key

    # Key management at runtime (the admin surface, SIGHUP): connections already authenticated
    # are untouched; the next authentication sees the new set.
    def key_names(self) -> list[str]:
        return sorted(self._keys)

    def replace_keys(self, keys: Mapping[str, ApiKey]) -> None:
        self._keys = dict(keys)

    def add_key(self, key: ApiKey) -> None:
        self._keys[key.name] = key

    def revoke_key(self, name: str) -> bool:
        return self._keys.pop(name, None) is not None

    def authenticate(
        self, now_ms: int, *, key: str | None, token: str | None, client_id: str | None
    ) -> Identity:
        """Return the Identity for the credentials; raise AuthError otherwise."""
        if client_id == "*":
            raise AuthError(ErrorCode.INVALID_CLIENT_ID, "clientId '*' is reserved for tokens")
        if token:
            ident = self._verify_token(now_ms, token)
            if client_id is not None and ident.client_id not in (None, "*", client_id):
                raise AuthError(ErrorCode.INVALID_CLIENT_ID, "clientId does not match the token's clientId")
            if client_id is not None:
                ident = replace(ident, client_id=client_id)
            return ident
        if key:
            return self._key_identity(self._verify_key(key), client_id, self._capability_for_key(key))
        if self._dev:
            return self._key_identity("dev", client_id, FULL_CAPABILITY)
        raise AuthError(ErrorCode.UNAUTHORIZED, "no credentials: send key= or access_token=")

    def _key_identity(self, key_name: str, client_id: str | None, capability: Capability) -> Identity:
        """One Identity per API key and clientId, shared by their connections (it is frozen), so
        each connection does not hold its own copy of the same three fields."""
        cache_key = (key_name, client_id)
        ident = self._key_identities.get(cache_key)
        if ident is None or ident.capability is not capability:
            if len(self._key_identities) >= KEY_IDENTITIES_KEPT:
                self._key_identities.clear()
            ident = self._key_identities[cache_key] = Identity(key_name, client_id, capability, None)
        return ident

    def _capability_for_key(self, key: str) -> Capability:
        name = key.partition(":")[0]
        api_key = self._lookup(name)
        return api_key.capability if api_key else FULL_CAPABILITY

    def _verify_key(self, key: str) -> str:
        name, sep, secret = key.partition(":")
        extra = self._extra_keys(name) if self._extra_keys is not None else None
        if self._dev and extra is None and (self._any_key or name in self._keys):
            return name or "dev"
        api_key = self._keys.get(name) or extra
        if not sep or api_key is None:
            raise AuthError(ErrorCode.INVALID_CREDENTIALS, "unknown API key")
        if not hmac.compare_digest(api_key.secret.encode(), secret.encode()):
            raise AuthError(ErrorCode.INVALID_CREDENTIALS, "invalid API key secret")
        return name

    def _verify_token(self, now_ms: int, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            if self._dev:
                return Identity("dev", None, FULL_CAPABILITY, None)
            raise AuthError(ErrorCode.TOKEN_UNRECOGNISED, "token is not a JWT") from None
        kid = header.get("kid")
        api_key = self._lookup(kid) if isinstance(kid, str) else None
        if api_key is None:
            if self._dev:
                claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
                cid = claims.get("x-ably-clientId")
                return Identity("dev", cid if isinstance(cid, str) else None, FULL_CAPABILITY, None)
            raise AuthError(ErrorCode.TOKEN_UNRECOGNISED, "token names no known key (kid)")
        try:
            claims = jwt.decode(
                token, api_key.secret, algorithms=["HS256"], options={"verify_exp": False, "require": ["exp"]}
            )
        except jwt.PyJWTError as exc:
            raise AuthError(ErrorCode.TOKEN_UNRECOGNISED, f"token rejected: {type(exc).__name__}") from None
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp * 1000 <= now_ms:
            raise AuthError(ErrorCode.TOKEN_EXPIRED, "token expired")
        cap_raw = claims.get("x-ably-capability")
        try:
            capability = (
                intersect(api_key.capability, parse_capability(cap_raw)) if cap_raw else api_key.capability
            )
        except ValueError as exc:
            raise AuthError(ErrorCode.TOKEN_UNRECOGNISED, f"bad x-ably-capability: {exc}") from None
        cid = claims.get("x-ably-clientId")
        iat = claims.get("iat")
        revocation_key = claims.get("x-ably-revocation-key")
        return Identity(
            api_key.name,
            cid if isinstance(cid, str) else None,
            capability,
            int(exp * 1000),
            # A JWT without iat counts as issued at the epoch: any revocation of its target covers it.
            int(iat * 1000) if isinstance(iat, (int, float)) else 0,
            revocation_key if isinstance(revocation_key, str) else None,
        )
