"""Connection keys: routable, URL-safe, HMAC-signed (DESIGN 2 "Connection keys route").

A key reads ``<owner>.<secondary>.<connectionId>.<epoch>.<mac>``:

- ``owner``: node id of the frontend that owns the connection's state;
- ``secondary``: node id holding the state's copy (``-`` when none);
- ``connectionId``: the public connection id;
- ``epoch``: the ownership epoch, bumped whenever ownership moves;
- ``mac``: 128 bits of HMAC-SHA256 over the rest, with the cluster secret.

Node ids and connection ids never contain ``.``, so a router can split a key
without a lookup, and nobody without the secret can make one that verifies.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from collections.abc import Sequence
from dataclasses import dataclass

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
CONNECTION_ID_LENGTH = 16  # 96 bits
MAC_BYTES = 16
MAX_KEY_LENGTH = 200
NO_SECONDARY = "-"


class InvalidKey(ValueError):
    """The key is malformed or its MAC does not verify (answer 80018)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionKey:
    owner: str
    secondary: str | None
    connection_id: str
    epoch: int

    def payload(self) -> str:
        return f"{self.owner}.{self.secondary or NO_SECONDARY}.{self.connection_id}.{self.epoch}"


def new_connection_id(rng: random.Random) -> str:
    """A fresh public connection id: URL-safe, without ``.`` or ``:``."""
    return "".join(rng.choice(_ID_ALPHABET) for _ in range(CONNECTION_ID_LENGTH))


def _valid_id(value: str) -> bool:
    return 0 < len(value) <= 64 and all(c in _ID_ALPHABET for c in value)


class KeySigner:
    """Signs keys with the first secret and verifies with any (rotation)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("KeySigner needs at least one secret")
        self._secrets = [s.encode() for s in secrets]

    def _mac(self, secret: bytes, payload: str) -> str:
        digest = hmac.new(secret, payload.encode(), hashlib.sha256).digest()[:MAC_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, key: ConnectionKey) -> str:
        payload = key.payload()
        return f"{payload}.{self._mac(self._secrets[0], payload)}"

    def verify(self, text: str) -> ConnectionKey:
        """Return the decoded key; raise InvalidKey if malformed or forged."""
        if not isinstance(text, str) or len(text) > MAX_KEY_LENGTH:
            raise InvalidKey("connection key too long or not text")
        parts = text.split(".")
        if len(parts) != 5:
            raise InvalidKey("connection key has the wrong shape")
        owner, secondary, conn_id, epoch_text, mac = parts
        if not (
            _valid_id(owner) and _valid_id(conn_id) and (secondary == NO_SECONDARY or _valid_id(secondary))
        ):
            raise InvalidKey("connection key has invalid ids")
        if not epoch_text.isdigit() or len(epoch_text) > 12:
            raise InvalidKey("connection key has an invalid epoch")
        payload = text.rpartition(".")[0]
        if not any(hmac.compare_digest(self._mac(s, payload), mac) for s in self._secrets):
            raise InvalidKey("connection key signature does not verify")
        return ConnectionKey(
            owner=owner,
            secondary=None if secondary == NO_SECONDARY else secondary,
            connection_id=conn_id,
            epoch=int(epoch_text),
        )
