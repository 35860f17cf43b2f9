"""The dev-mode sandbox: ``POST /apps``, ``DELETE /apps/{id}`` and ``POST /stats`` as SDK test
harnesses call them (ably-js's ``testapp_manager``, ably-go's sandbox).

Theory of operation. A harness posts a test-app spec (``ably-common``'s
``test-resources/test-app-setup.json``): keys with capabilities, namespaces, and channels with
presence fixtures. It then connects with those keys to *any* frontend of the cluster, directly or
through a router, and expects each key to carry exactly the capability it asked for (several tests
check that a refusal comes from the server).

No state is shared to make that work: a sandbox key is **self-describing and self-verifying**.

- Its name is ``sbx<app>.c<blob>``: ``<app>`` is 10 random hex digits (the app id is ``sbx<app>``)
  and ``<blob>`` is the base64url of the zlib-compressed canonical JSON of the key's index, its
  capability and its flags. Any frontend reads the capability back from the name.
- Its secret is ``base64url(HMAC-SHA256(cluster_secret, "continuity-sandbox-key" NUL name))``, so
  any frontend that holds the cluster secret (every member of the cluster) verifies it, and nobody
  without the secret can mint a name with another capability.

So a key created on one frontend is valid on every frontend at once, through any router, and
survives restarts. The price: ``DELETE /apps/{id}`` cannot revoke those keys cluster-wide; it checks
the caller holds a key of the app and acknowledges. The sandbox exists only in dev mode (every other
key is accepted with full capability there anyway); outside dev mode its paths answer 404.

``POST /stats`` validates the harness's stats fixtures (a JSON array of objects each with an
``intervalId``) against a key of an app and acknowledges them; the stats API itself is not served
(stats is out of scope), so they are not stored.

This module is pure: :class:`SandboxKeys` resolves key names, :func:`handle` turns one request into
a status and a JSON body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from frontend.auth import FULL_CAPABILITY, ApiKey, Capability, parse_capability
from kernel.errors import ErrorCode, ErrorInfo, RefusedError

APPS_PATH = "/apps"
STATS_PATH = "/stats"
APP_PREFIX = "sbx"
MAX_KEYS = 32
MAX_BLOB_CHARS = 2048
_DOMAIN = b"continuity-sandbox-key\x00"
_NAME = re.compile(r"^(sbx[0-9a-f]{10})\.c([A-Za-z0-9_-]{4,2048})$")  # 2048: MAX_BLOB_CHARS
_APP_ID = re.compile(r"^sbx[0-9a-f]{10}$")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_capability(capability: Capability) -> str:
    """The capability as Ably returns it: compact JSON, resources and operations sorted."""
    return json.dumps({res: sorted(ops) for res, ops in sorted(capability.items())}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class SandboxKey:
    """A key of a sandbox app, as decoded from its name."""

    app_id: str
    name: str
    secret: str
    capability: Capability
    revocable_tokens: bool

    def api_key(self) -> ApiKey:
        return ApiKey(self.name, self.secret, self.capability, revocable_tokens=self.revocable_tokens)


class SandboxError(RefusedError):
    """A sandbox request (test app creation, its keys) refused."""


class SandboxKeys:
    """Mints and resolves self-verifying sandbox keys with the cluster's secrets (first one mints)."""

    def __init__(self, cluster_secrets: Sequence[str]) -> None:
        if not cluster_secrets:
            raise ValueError("the sandbox needs the cluster secret")
        self._secrets = [s.encode() for s in cluster_secrets]

    def _secret_for(self, name: str, secret: bytes) -> str:
        return _b64(hmac.new(secret, _DOMAIN + name.encode(), hashlib.sha256).digest())

    def mint(self, app_id: str, index: int, capability: Capability, revocable_tokens: bool) -> SandboxKey:
        spec = {"i": index, "c": json.loads(canonical_capability(capability)), "r": revocable_tokens}
        blob = _b64(zlib.compress(json.dumps(spec, separators=(",", ":")).encode(), 9))
        name = f"{app_id}.c{blob}"
        if len(blob) > MAX_BLOB_CHARS:
            raise SandboxError(ErrorCode.BAD_REQUEST, f"key {index}: capability too large")
        secret = self._secret_for(name, self._secrets[0])
        return SandboxKey(app_id, name, secret, capability, revocable_tokens)

    def resolve(self, name: str) -> ApiKey | None:
        """The ApiKey a sandbox key name stands for (secret from the current cluster secret), or None."""
        key = self.decode(name)
        return key.api_key() if key is not None else None

    def decode(self, name: str) -> SandboxKey | None:
        match = _NAME.match(name)
        if match is None:
            return None
        try:
            spec = json.loads(zlib.decompress(_unb64(match.group(2)), bufsize=MAX_BLOB_CHARS * 8))
            capability = parse_capability(spec["c"])
            revocable = bool(spec.get("r", False))
        except (binascii.Error, zlib.error, ValueError, KeyError, TypeError):
            return None
        secret = self._secret_for(name, self._secrets[0])
        return SandboxKey(match.group(1), name, secret, capability, revocable)

    def verify(self, key_str: str) -> SandboxKey | None:
        """The SandboxKey for ``name:secret`` when the secret matches under any cluster secret."""
        name, sep, given = key_str.partition(":")
        key = self.decode(name) if sep else None
        if key is None:
            return None
        for secret in self._secrets:
            if hmac.compare_digest(self._secret_for(name, secret).encode(), given.encode()):
                return key
        return None


def handles(path: str) -> bool:
    return path in (APPS_PATH, STATS_PATH) or path.startswith(APPS_PATH + "/")


def _error(code: ErrorCode, message: str) -> tuple[int, dict[str, Any]]:
    info = ErrorInfo.of(code, message)
    return info.status_code, {"error": info.to_wire()}


def _basic_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
    return query.get("key")


def _parse_spec(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        spec = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SandboxError(ErrorCode.BAD_REQUEST, "the app spec is not JSON") from None
    if not isinstance(spec, dict):
        raise SandboxError(ErrorCode.BAD_REQUEST, "the app spec must be a JSON object")
    return spec


def _list_of_objects(spec: Mapping[str, Any], field: str) -> list[dict[str, Any]]:
    value = spec.get(field, [])
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise SandboxError(ErrorCode.BAD_REQUEST, f"'{field}' must be a list of objects")
    return value


def create_app(keys: SandboxKeys, body: bytes, host: str | None) -> dict[str, Any]:
    """Provision an app from the posted spec; the reply the harnesses read (keys first)."""
    spec = _parse_spec(body)
    key_specs = _list_of_objects(spec, "keys") or [{}]
    if len(key_specs) > MAX_KEYS:
        raise SandboxError(ErrorCode.BAD_REQUEST, f"at most {MAX_KEYS} keys per app")
    namespaces = _list_of_objects(spec, "namespaces")
    for ns in namespaces:
        if not isinstance(ns.get("id"), str) or not ns["id"]:
            raise SandboxError(ErrorCode.BAD_REQUEST, "every namespace needs a string 'id'")
    channels = _list_of_objects(spec, "channels")
    app_id = APP_PREFIX + secrets.token_hex(5)
    out_keys = []
    for index, key_spec in enumerate(key_specs):
        raw_cap = key_spec.get("capability")
        try:
            capability = parse_capability(raw_cap) if raw_cap is not None else FULL_CAPABILITY
        except ValueError as exc:
            raise SandboxError(ErrorCode.BAD_REQUEST, f"key {index}: {exc}") from None
        key = keys.mint(app_id, index, capability, bool(key_spec.get("revocableTokens", False)))
        out_keys.append(
            {
                "id": key.name.partition(".")[2],
                "appId": app_id,
                "keyName": key.name,
                "keySecret": key.secret,
                "keyStr": f"{key.name}:{key.secret}",
                "capability": canonical_capability(capability),
                "revocableTokens": key.revocable_tokens,
                "status": 0,
            }
        )
    reply: dict[str, Any] = {
        "appId": app_id,
        "accountId": "sandbox",
        "status": 0,
        "keys": out_keys,
        "namespaces": namespaces,
        "channels": channels,
        "connections": [],
        "tls": False,
    }
    if host:
        endpoint, _, port = host.rpartition(":")
        if endpoint and port.isdigit():
            reply["endpoint"] = endpoint.strip("[]")
            reply["port"] = int(port)
        else:
            reply["endpoint"] = host
            reply["port"] = 80
    return reply


def _app_key(keys: SandboxKeys, headers: Mapping[str, str], query: Mapping[str, str]) -> SandboxKey:
    key_str = _basic_key(headers, query)
    if key_str is None:
        raise SandboxError(ErrorCode.UNAUTHORIZED, "send a key of the app (Basic auth)")
    key = keys.verify(key_str)
    if key is None:
        raise SandboxError(ErrorCode.INVALID_CREDENTIALS, "not a valid sandbox key")
    return key


def _check_stats(body: bytes) -> int:
    try:
        records = json.loads(body or b"[]")
    except (ValueError, UnicodeDecodeError):
        raise SandboxError(ErrorCode.BAD_REQUEST, "stats fixtures are not JSON") from None
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and isinstance(r.get("intervalId"), str) for r in records
    ):
        raise SandboxError(ErrorCode.BAD_REQUEST, "stats fixtures are objects each with an 'intervalId'")
    return len(records)


def handle(
    keys: SandboxKeys,
    method: str,
    path: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
) -> tuple[int, dict[str, Any] | None]:
    """One sandbox request: (HTTP status, JSON body or None for no content)."""
    try:
        if path == APPS_PATH:
            if method != "POST":
                return _error(ErrorCode.METHOD_NOT_ALLOWED, "POST /apps creates a sandbox app")
            return 201, create_app(keys, body, headers.get("host"))
        if path == STATS_PATH:
            if method != "POST":
                return _error(ErrorCode.NOT_FOUND, "the stats API is not served (only fixtures are taken)")
            _app_key(keys, headers, query)
            return 201, {"accepted": _check_stats(body)}
        app_id = path[len(APPS_PATH) + 1 :]
        if method != "DELETE" or not _APP_ID.match(app_id):
            return _error(ErrorCode.NOT_FOUND, f"no such path: {path}")
        if _app_key(keys, headers, query).app_id != app_id:
            return _error(ErrorCode.CAPABILITY_DENIED, "the key is not a key of this app")
        return 204, None
    except SandboxError as exc:
        return _error(exc.code, str(exc))
