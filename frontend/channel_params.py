"""Channel params on ATTACH (Ably's channel params): which are served, and what ``rewind`` asks.

Theory of operation
-------------------
A client names params in its ATTACH (``channels.get(name, {params: {rewind: '5'}})``). Ably
recognises ``rewind``, ``modes``, ``delta`` and ``occupancy`` (``SERVED_PARAMS``). Here ``rewind``
is either a count of messages (``rewind=5``; above ``REWIND_MAX_MESSAGES`` the newest 100, as in
Ably) or a duration (``rewind=30s``, ``2m``, ``1h``, at most ``REWIND_MAX_MS``). A malformed
``rewind`` is refused with a channel-scoped 40000 that says why.

A param Ably does not document is not applied and not echoed (so ``channel.params`` holds only what
was accepted, as ably-js's channel.test.js expects), but it is not silent either: the ATTACHED
carries an ErrorInfo 40000 naming it (``unknown_params_error``; ably-js shows it as the attach's
``stateChange.reason`` and ``channel.errorReason``), and the frontend logs and counts it. The channel
still attaches, so code written for Ably, or an SDK that adds a param of its own, keeps working,
and a typo (``rewnd=5``) is reported where the developer looks. A malformed value of a known
param is a refusal (the channel fails), because what it asked cannot be honoured.

A rewind applies only to an attach that does not resume (the client holds no channelSerial for
the channel); a resume continues from its serial as always. The rewind becomes a *replay cursor*
(``ChannelLog.rewind_cursor``) that travels to the channel's home in place of a serial, so the
home picks the entries and the attach stays one atomic step there (ATTACHED, replay, then live).
A duration is turned into an absolute time here, at the frontend that received the ATTACH.

Pure: ``now_ms`` comes in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from frontend.channel_log import rewind_cursor

REWIND_MAX_MESSAGES = 100
REWIND_MAX_MS = 24 * 3600 * 1000  # bounded anyway by what the log (or the store) still holds
# The params Ably documents: rewind is served here, modes by pubsub (modes_param); delta and
# occupancy are accepted and echoed as Ably does, without effect. Anything else is reported.
SERVED_PARAMS = frozenset({"rewind", "modes", "delta", "occupancy"})
_DURATION = re.compile(r"^(\d{1,9})(s|m|h)$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000}


@dataclass(frozen=True, slots=True)
class AttachParams:
    """What an ATTACH's params ask for, once checked."""

    echo: dict[str, str]  # the params we accepted, echoed in ATTACHED (ably-js: channel.params)
    rewind_cursor: str | None  # where the replay of a fresh attach starts, or None
    unknown: tuple[str, ...] = ()  # names of params Ably does not document: not applied, reported

    @property
    def echoed(self) -> dict[str, str] | None:
        """The echo as ATTACHED carries it (no field when empty)."""
        return self.echo or None

    def unknown_params_error(self) -> str | None:
        """The message of the 40000 an ATTACHED carries when some params were not recognised."""
        if not self.unknown:
            return None
        names = ", ".join(repr(n) for n in self.unknown)
        served = ", ".join(sorted(SERVED_PARAMS))
        return f"unknown channel params ignored: {names} (the params served are {served})"


class ParamError(ValueError):
    """A param we do not serve or cannot parse; the message says which and why."""


def parse_attach_params(params: Mapping[str, str] | None, now_ms: int) -> AttachParams:
    """Check an ATTACH's params; raises ParamError for a malformed ``rewind`` (unknown params are
    listed in ``unknown``, not raised)."""
    if not params:
        return AttachParams({}, None)
    echo = {k: v for k, v in params.items() if k in SERVED_PARAMS}
    unknown = tuple(sorted(k for k in params if k not in SERVED_PARAMS))
    value = params.get("rewind")
    if value is None:
        return AttachParams(echo, None, unknown)
    value = value.strip()
    if value.isdigit() and len(value) <= 9:
        count = int(value)
        count = min(count, REWIND_MAX_MESSAGES)  # Ably's limit: more asks get the newest 100
        return AttachParams(echo, rewind_cursor(count=count) if count else None, unknown)
    m = _DURATION.match(value)
    if m is None:
        raise ParamError(
            f"rewind={value!r} is neither a message count (e.g. 5) nor a duration (e.g. 30s, 2m, 1h)"
        )
    span = int(m.group(1)) * _UNIT_MS[m.group(2)]
    if span > REWIND_MAX_MS:
        raise ParamError(f"rewind={value}: at most {REWIND_MAX_MS // 3_600_000}h can be rewound")
    return AttachParams(echo, rewind_cursor(since_ms=now_ms - span) if span else None, unknown)
