"""What a ClientSession keeps per channel and per pending publish, and its timing configuration.

Plain data, split out of ``continuity.session`` (which re-exports ``ChannelRecord`` and ``SessionConfig``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from continuity.backoff import Backoff
from continuity.events import ChannelState
from kernel.errors import ErrorCode, ErrorInfo
from kernel.protocol import Action, ProtocolMessage


@dataclass(slots=True, kw_only=True)
class ChannelRecord:
    """What the session knows of one channel. Read it; mutate only via the session."""

    name: str
    state: ChannelState = ChannelState.INITIALIZED
    serial: str | None = None
    modes: int = 0
    params: dict[str, str] | None = None
    granted: int = 0
    reason: ErrorInfo | None = None
    resumed: bool = False
    attach_deadline: float | None = None
    retry_at: float | None = None  # RTL13b: when a SUSPENDED channel tries ATTACH again
    # RTP17: the members this connection entered (clientId -> its latest wire event), re-entered
    # on a non-resumed ATTACHED, and the tokens of those re-entries (a failure is reported, RTP17e).
    my_members: dict[str, dict[str, Any]] = field(default_factory=dict)
    reentries: set[int] = field(default_factory=set)
    attached_on: str | None = None  # the connectionId of the last ATTACHED


@dataclass(slots=True, kw_only=True)
class _Pending:
    token: int
    channel: str
    messages: list[dict[str, Any]]
    msg_serial: int | None = None
    presence: bool = False  # a PRESENCE (enter/update/leave) rather than a MESSAGE

    def frame(self) -> ProtocolMessage:
        """The frame that sends (or re-sends) it, once it has its msgSerial."""
        if self.presence:
            return ProtocolMessage(
                action=Action.PRESENCE,
                channel=self.channel,
                msg_serial=self.msg_serial,
                presence=self.messages,
            )
        return ProtocolMessage(
            action=Action.MESSAGE, channel=self.channel, msg_serial=self.msg_serial, messages=self.messages
        )


def idle_timeout_error(ms: int) -> ErrorInfo:
    return ErrorInfo(
        code=int(ErrorCode.DISCONNECTED),
        status_code=408,
        message=f"No activity seen from realtime in {ms} ms",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """Client timing. Seconds throughout."""

    # Bound on WebSocket open + CONNECTED, ATTACH → ATTACHED, ping → echo (ably-js realtimeRequestTimeout).
    request_timeout: float = 10.0
    # Reconnect delays.
    backoff: Backoff = field(default_factory=Backoff)
    # Give up resuming (→ SUSPENDED, 80002) this long after transport loss; None = the server's
    # connectionStateTtl from CONNECTED.
    connection_state_ttl: float | None = None
    # Delay between attempts once SUSPENDED (the session keeps trying with its key; the server arbitrates).
    suspended_retry: float = 5.0
    # RTL13b: a channel SUSPENDED by an attach timeout retries after this (channelRetryTimeout).
    channel_retry: float = 15.0

    def __post_init__(self) -> None:
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be > 0 seconds")
        if self.connection_state_ttl is not None and self.connection_state_ttl <= 0:
            raise ValueError("connection_state_ttl must be > 0 seconds")
        if self.suspended_retry <= 0:
            raise ValueError("suspended_retry must be > 0 seconds")
        if self.channel_retry <= 0:
            raise ValueError("channel_retry must be > 0 seconds")
