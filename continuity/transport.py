"""What the Connection and its transport drivers (``continuity.websocket``, ``continuity.comet``) share.

A driver runs one transport until it fails (it raises) or is cancelled. It talks
to the Connection only through a :class:`Link`: inbound frames go to
``deliver``, outbound ones come from ``outgoing``, and it reports its progress
(``reached``: TCP connected; ``opened``: the WebSocket 101 or the first Comet
bytes). The Connection turns what it raised into an :class:`Attempt`, from which
the fallback decision is made (``transport_order``, ``Attempt.falls_back``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Protocol

import trio
import trio_websocket

from kernel.errors import ErrorCode, ErrorInfo, RemoteProtocolError
from kernel.protocol import ProtocolMessage

# Transport names, as ably-js spells them (PROTOCOL.md 6.1).
WEB_SOCKET = "web_socket"
COMET = "comet"
TRANSPORTS = (WEB_SOCKET, COMET)


class CometError(Exception):
    """A Comet request failed (bad status, malformed body, HTTP protocol error): transport loss.

    ``info`` is the server's reason when its answer carried one.
    """

    def __init__(self, message: str, info: ErrorInfo | None = None) -> None:
        super().__init__(message)
        self.info = info


# Everything a driver raises when its transport is lost (anything else is a bug and propagates).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    trio_websocket.HandshakeError,
    trio_websocket.ConnectionClosed,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    RemoteProtocolError,
    CometError,
)


def check_transports(transports: Iterable[str]) -> tuple[str, ...]:
    """``transports`` as a tuple; raises ValueError unless it is a non-empty sequence of distinct
    names among TRANSPORTS."""
    if isinstance(transports, str):
        raise ValueError(f"transports must be a sequence of names, got the string {transports!r}")
    out = tuple(transports)
    if not out or len(set(out)) != len(out) or any(t not in TRANSPORTS for t in out):
        raise ValueError(f"transports must be distinct names among {TRANSPORTS}, got {out!r}")
    return out


def transport_order(transports: tuple[str, ...], websocket_unavailable: bool) -> tuple[str, ...]:
    """The order to try on the next connect attempt: ``transports``, with Comet first once the
    WebSocket has proved unavailable (ably-js persists its fallback the same way)."""
    if websocket_unavailable and COMET in transports:
        return (COMET, *(t for t in transports if t != COMET))
    return transports


def failure_reason(exc: BaseException) -> ErrorInfo:
    """The ``reason`` of a DISCONNECTED caused by ``exc``: the server's own when it sent one."""
    if isinstance(exc, RemoteProtocolError):
        return exc.info()
    if isinstance(exc, CometError) and exc.info is not None:
        return exc.info
    return ErrorInfo(code=int(ErrorCode.DISCONNECTED), status_code=0,
                     message=f"transport lost: {type(exc).__name__}: {exc}")


@dataclass(slots=True, kw_only=True)
class Attempt:
    """How one transport attempt went."""

    kind: str
    # The server was reached (TCP connected), so another transport may still work there.
    reached: bool = False
    # The transport opened (WebSocket 101, or the first bytes of /comet/connect).
    opened: bool = False
    # What ended it (None: cancelled, e.g. dropped on the session's request).
    failure: BaseException | None = None
    # The connect attempt timed out while this transport was opening (CONNECT_TIMEOUT).
    timed_out: bool = False

    @property
    def reason(self) -> ErrorInfo | None:
        return None if self.failure is None else failure_reason(self.failure)

    @property
    def falls_back(self) -> bool:
        """Whether the next transport should be tried in the same connect attempt: the server
        answered on TCP but this transport did not open there."""
        return self.reached and not self.opened

    @property
    def websocket_refused(self) -> bool:
        """A WebSocket that reached the server and was refused (an HTTP answer instead of the 101)
        or timed out opening: WebSocket looks unavailable on this path."""
        return (self.kind == WEB_SOCKET and self.falls_back
                and (self.timed_out or isinstance(self.failure, (trio_websocket.ConnectionRejected,
                                                                  trio.TooSlowError))))


class Link(Protocol):
    """What a transport driver needs from its Connection."""

    @property
    def key(self) -> str | None:
        """The session's current connectionKey (None before CONNECTED)."""

    @property
    def recv_timeout(self) -> float:
        """Bound on one Comet recv, seconds (maxIdleInterval + request_timeout)."""

    def reached(self) -> None:
        """TCP to the server is connected."""

    def opened(self) -> None:
        """The transport is open: the WebSocket 101, or the first Comet bytes (ably-js ``preconnect``)."""

    def deliver(self, frames: list[ProtocolMessage]) -> None:
        """Feed inbound frames to the session, in order."""

    def activity(self) -> None:
        """The transport is alive though no frame came (RTN23: each completed Comet recv counts)."""

    def outgoing(self) -> list[ProtocolMessage]:
        """Drain the frames to send."""

    def wait_outgoing(self) -> Awaitable[None]:
        """Wait until the session may have frames to send."""
