"""Token revocation (Ably RSA17): which tokens a key has revoked, and whether a token is one.

Theory of operation
-------------------
``POST /keys/{keyName}/revokeTokens`` (Basic auth with that key, which must have been created
with revocable tokens) names *targets*, each ``type:value``: ``clientId:<id>`` revokes the key's
tokens bound to that clientId, ``revocationKey:<k>`` those carrying that revocation key (the
``x-ably-revocation-key`` claim of a JWT). Each target becomes one :class:`Revocation` record:
every token of the key that matches it and was issued before ``issuedBefore`` (default: now) is
refused from ``appliesAt`` on (now, or 30 s later with ``allowReauthMargin``, which leaves its
holders time to fetch a new token). A refused token is answered 40141 ("token revoked"), on
REST and on a realtime connect, resume or AUTH alike; a live connection using one is cut with a
resumable DISCONNECTED 40141 when the record applies (``frontend.rest.revoke`` does that).

:class:`RevocationList` holds the records. It is a set with a merge that only grows (adding a
record twice changes nothing, and a record dominated by another, with an older ``issuedBefore``
and not in force sooner, is dropped), so frontends that exchange their records in any order, any
number of times, converge: that is how the revocation spreads through the cluster (the driver
pushes each new record to every live frontend, and its whole list to a frontend that comes
alive). A record is kept for ``RETENTION_MS`` after its ``issuedBefore``, the longest life of a
native token, after which every token it can match has expired anyway. Its size is bounded
(``MAX_RECORDS``): past it a new revocation is refused (40003) rather than memory growing.

Pure: ``now_ms`` comes in.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from frontend.auth import Identity
from kernel.errors import ErrorCode, ErrorInfo, RefusedError

TARGET_TYPES = ("clientId", "revocationKey")
REAUTH_MARGIN_MS = 30_000
RETENTION_MS = 24 * 60 * 60 * 1000  # frontend.tokens.MAX_TTL_MS: no native token lives longer
MAX_TARGETS = 100
MAX_RECORDS = 100_000
MAX_VALUE = 512


class RevocationError(RefusedError):
    """A revokeTokens request refused as a whole (bad body, too many records)."""


@dataclass(frozen=True, slots=True)
class Revocation:
    """Tokens of ``key_name`` matching ``target_type:target_value`` and issued before
    ``issued_before_ms`` are refused from ``applies_at_ms`` on."""

    key_name: str
    target_type: str
    target_value: str
    issued_before_ms: int
    applies_at_ms: int

    @property
    def target(self) -> str:
        return f"{self.target_type}:{self.target_value}"

    @property
    def slot(self) -> tuple[str, str, str]:
        return (self.key_name, self.target_type, self.target_value)

    def matches(self, ident: Identity) -> bool:
        """Whether ``ident`` (a token's) is one this record revokes, whenever it applies."""
        if ident.key_name != self.key_name or ident.issued_ms is None:
            return False
        if ident.issued_ms >= self.issued_before_ms:
            return False
        if self.target_type == "clientId":
            return ident.client_id == self.target_value
        return ident.revocation_key == self.target_value

    def dominates(self, other: Revocation, now_ms: int) -> bool:
        """Every token ``other`` refuses, from ``now_ms`` on, is refused by this one too."""
        return (
            self.slot == other.slot
            and self.issued_before_ms >= other.issued_before_ms
            and max(self.applies_at_ms, now_ms) <= max(other.applies_at_ms, now_ms)
        )

    def success_result(self) -> dict[str, Any]:
        """The TokenRevocationSuccessResult (TRS2) the SDKs read."""
        return {"target": self.target, "issuedBefore": self.issued_before_ms, "appliesAt": self.applies_at_ms}

    def to_wire(self) -> list[Any]:
        return [self.key_name, self.target_type, self.target_value, self.issued_before_ms, self.applies_at_ms]

    @classmethod
    def from_wire(cls, raw: Any) -> Revocation:
        """A record as a peer sent it; ValueError when it does not fit."""
        if not isinstance(raw, (list, tuple)) or len(raw) != 5:
            raise ValueError("a revocation is [key, type, value, issuedBefore, appliesAt]")
        key, kind, value, before, applies = raw
        if not all(isinstance(x, str) and x for x in (key, kind, value)) or kind not in TARGET_TYPES:
            raise ValueError("a revocation names a key and a known target")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (before, applies)):
            raise ValueError("a revocation's times are integers (ms)")
        return cls(key, kind, value, before, applies)


def _flag(raw: object, name: str) -> bool:
    if raw is None:
        return False
    if isinstance(raw, bool):
        return raw
    if raw in ("true", "false"):
        return raw == "true"
    raise RevocationError(ErrorCode.INVALID_PARAMETER, f"{name} must be a boolean")


def parse_request(now_ms: int, key_name: str, body: Any) -> tuple[list[Revocation], list[dict[str, Any]]]:
    """A revokeTokens body (``targets``, ``issuedBefore``, ``allowReauthMargin``): the records to
    add, and one result per target, in order (TRS2 for a valid target, TRF2 for one that is not).
    RevocationError when the request as a whole is malformed."""
    if not isinstance(body, Mapping):
        raise RevocationError(ErrorCode.INVALID_BODY, "the body must be an object with targets")
    targets = body.get("targets")
    if (
        not isinstance(targets, list)
        or not 1 <= len(targets) <= MAX_TARGETS
        or not all(isinstance(t, str) for t in targets)
    ):
        raise RevocationError(
            ErrorCode.INVALID_BODY, f"targets must be 1..{MAX_TARGETS} 'type:value' strings"
        )
    before = body.get("issuedBefore")
    if before is None:
        issued_before = now_ms
    elif isinstance(before, (int, float)) and not isinstance(before, bool):
        issued_before = int(before)
        if issued_before > now_ms:
            raise RevocationError(ErrorCode.INVALID_PARAMETER, "issuedBefore may not be in the future")
    else:
        raise RevocationError(ErrorCode.INVALID_PARAMETER, "issuedBefore must be a time in ms")
    margin = REAUTH_MARGIN_MS if _flag(body.get("allowReauthMargin"), "allowReauthMargin") else 0
    records: list[Revocation] = []
    results: list[dict[str, Any]] = []
    for target in targets:
        kind, sep, value = target.partition(":")
        if not sep or kind not in TARGET_TYPES or not value or len(value) > MAX_VALUE:
            why = (
                f"unknown target type {kind!r}: use one of {', '.join(TARGET_TYPES)}"
                if kind not in TARGET_TYPES
                else f"a target is type:value with a value of 1..{MAX_VALUE} characters"
            )
            results.append({"target": target, "error": ErrorInfo.of(ErrorCode.BAD_REQUEST, why).to_wire()})
            continue
        record = Revocation(key_name, kind, value, issued_before, now_ms + margin)
        records.append(record)
        results.append(record.success_result())
    return records, results


class RevocationList:
    """The records in force, by (key, target); merges only grow it (see the module doc)."""

    def __init__(self, *, max_records: int = MAX_RECORDS) -> None:
        self.max_records = max_records
        self._slots: dict[tuple[str, str, str], list[Revocation]] = {}
        self._count = 0
        self._pending: list[tuple[int, int, Revocation]] = []  # (appliesAt, seq, record) not yet due
        self._seq = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Revocation]:
        for records in self._slots.values():
            yield from records

    def room_for(self, n: int) -> bool:
        return self._count + n <= self.max_records

    def add(self, now_ms: int, record: Revocation) -> bool:
        """Merge ``record``; True when it changed the list (it was neither known nor dominated).
        A record past retention, or one more than ``max_records``, is not kept (False)."""
        if record.issued_before_ms + RETENTION_MS <= now_ms:
            return False
        held = self._slots.get(record.slot, [])
        if any(r.dominates(record, now_ms) for r in held):
            return False
        if self._count >= self.max_records:
            return False
        kept = [r for r in held if not record.dominates(r, now_ms)]
        self._count += len(kept) + 1 - len(held)
        self._slots[record.slot] = [*kept, record]
        if record.applies_at_ms > now_ms:
            self._seq += 1
            heapq.heappush(self._pending, (record.applies_at_ms, self._seq, record))
        return True

    def revoked(self, now_ms: int, ident: Identity) -> Revocation | None:
        """The record in force that refuses ``ident``, or None."""
        if ident.issued_ms is None:
            return None
        slots = [
            (ident.key_name, "clientId", ident.client_id),
            (ident.key_name, "revocationKey", ident.revocation_key),
        ]
        for key_name, kind, value in slots:
            if value is None:
                continue
            for record in self._slots.get((key_name, kind, value), ()):
                if record.applies_at_ms <= now_ms and record.matches(ident):
                    return record
        return None

    def due(self, now_ms: int) -> list[Revocation]:
        """Records that came into force since the last call (those added already in force are
        not listed: whoever added them enforces them at once)."""
        out = []
        while self._pending and self._pending[0][0] <= now_ms:
            out.append(heapq.heappop(self._pending)[2])
        return out

    def next_due(self) -> int | None:
        return self._pending[0][0] if self._pending else None

    def prune(self, now_ms: int) -> int:
        """Forget records past retention; how many went."""
        gone = 0
        for slot, records in list(self._slots.items()):
            kept = [r for r in records if r.issued_before_ms + RETENTION_MS > now_ms]
            gone += len(records) - len(kept)
            if kept:
                self._slots[slot] = kept
            else:
                del self._slots[slot]
        self._count -= gone
        return gone
