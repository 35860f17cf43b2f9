"""Batch presence: ``GET /presence?channels=a,b,c`` (RSC24), the members of several channels at once.

Each channel is answered on its own, in the order asked: a BatchPresenceSuccessResult
``{channel, presence: [PresenceMessage]}`` (BGR2), or a BatchPresenceFailureResult
``{channel, error}`` (BGF2) for a name that is not valid (40010), a channel the credentials may
not read presence of (needs ``presence`` or ``subscribe``, as ``GET /channels/{id}/presence``;
40160), or a home that does not answer in time (50001). The answer is a BatchResult
``{successCount, failureCount, results}``. The members come from each channel's home as
``frontend.rest_presence`` fetches them, all channels at once; at most ``MAX_CHANNELS`` names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from frontend.auth import Identity, allows
from frontend.pubsub import channel_name_problem
from frontend.rest.wire import RestError
from frontend.rest_presence import fetch_members, member_wire
from kernel.errors import ErrorCode, ErrorInfo

if TYPE_CHECKING:
    from frontend.node import FrontendNode

MAX_CHANNELS = 100


def channel_names(raw: str | None) -> list[str]:
    """The ``channels`` parameter: comma-separated names; RestError 40003 when absent or too many."""
    names = [n for n in (raw or "").split(",") if n]
    if not 1 <= len(names) <= MAX_CHANNELS:
        raise RestError(ErrorCode.INVALID_PARAMETER, f"channels must name 1..{MAX_CHANNELS} channels")
    return names


def refusal(ident: Identity, channel: str) -> ErrorInfo | None:
    """Why ``ident`` may not read ``channel``'s presence, or None."""
    problem = channel_name_problem(channel)
    if problem is not None:
        return ErrorInfo.of(ErrorCode.INVALID_CHANNEL_NAME, problem)
    if not (allows(ident.capability, channel, "presence") or allows(ident.capability, channel, "subscribe")):
        return ErrorInfo.of(
            ErrorCode.CAPABILITY_DENIED, f"channel denied access based on capability: {channel}"
        )
    return None


async def batch_presence(
    node: FrontendNode, now_ms: int, ident: Identity, names: list[str]
) -> dict[str, Any]:
    """The BatchResult for ``names`` (members as PresenceMessages, not yet made JSON-safe)."""
    results: list[dict[str, Any]] = [{} for _ in names]

    async def one(i: int, channel: str) -> None:
        error = refusal(ident, channel)
        if error is None:
            present = await fetch_members(node, now_ms, channel)
            if present is not None:
                members = sorted(
                    present.query(), key=lambda m: (str(m.get("clientId")), str(m.get("connectionId")))
                )
                results[i] = {"channel": channel, "presence": [member_wire(m) for m in members]}
                return
            error = ErrorInfo.of(ErrorCode.INTERNAL_CHANNEL, f"channel {channel} is unavailable")
        results[i] = {"channel": channel, "error": error.to_wire()}

    async with trio.open_nursery() as nursery:
        for i, channel in enumerate(names):
            nursery.start_soon(one, i, channel)
    failures = sum(1 for r in results if "error" in r)
    return {"successCount": len(results) - failures, "failureCount": failures, "results": results}
