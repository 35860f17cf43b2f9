"""Transport selection: names, order, and when a failed attempt falls back to the next transport."""

from __future__ import annotations

import pytest
import trio
import trio_websocket

from continuity.transport import (
    COMET,
    WEB_SOCKET,
    Attempt,
    CometError,
    check_transports,
    failure_reason,
    transport_order,
)
from kernel.errors import ErrorInfo, RemoteProtocolError


@pytest.mark.parametrize(
    "names", [["web_socket"], ["comet"], ("web_socket", "comet"), ["comet", "web_socket"]]
)
def test_check_transports_accepts_distinct_known_names(names: list[str]) -> None:
    assert check_transports(names) == tuple(names)


@pytest.mark.parametrize("names", [[], ["xhr_polling"], ["comet", "comet"], "comet", ["websocket"]])
def test_check_transports_rejects_anything_else(names: list[str]) -> None:
    with pytest.raises(ValueError):
        check_transports(names)


@pytest.mark.parametrize(
    "transports,unavailable,expected",
    [
        ((WEB_SOCKET, COMET), False, (WEB_SOCKET, COMET)),
        ((WEB_SOCKET, COMET), True, (COMET, WEB_SOCKET)),
        ((COMET, WEB_SOCKET), True, (COMET, WEB_SOCKET)),
        ((WEB_SOCKET,), True, (WEB_SOCKET,)),  # never fall back to a transport not asked for
        ((COMET,), False, (COMET,)),
    ],
)
def test_transport_order(transports: tuple[str, ...], unavailable: bool, expected: tuple[str, ...]) -> None:
    assert transport_order(transports, unavailable) == expected


def rejected() -> trio_websocket.ConnectionRejected:
    return trio_websocket.ConnectionRejected(403, (), b"no")


@pytest.mark.parametrize(
    "attempt,falls_back,refused",
    [
        # Nothing listens: no other transport can do better, the backoff applies.
        (Attempt(kind=WEB_SOCKET, failure=OSError("refused")), False, False),
        # Answered the upgrade with an HTTP error: fall back, and remember it.
        (Attempt(kind=WEB_SOCKET, reached=True, failure=rejected()), True, True),
        # Closed before the 101: fall back now, try WebSocket again next time.
        (Attempt(kind=WEB_SOCKET, reached=True, failure=trio.BrokenResourceError()), True, False),
        # The handshake timed out (ours or the session's connect deadline).
        (Attempt(kind=WEB_SOCKET, reached=True, failure=trio.TooSlowError()), True, True),
        (Attempt(kind=WEB_SOCKET, reached=True, timed_out=True), True, True),
        # Opened, then lost: a plain resume, no fallback.
        (Attempt(kind=WEB_SOCKET, reached=True, opened=True, failure=rejected()), False, False),
        # Comet that reached the server but did not open falls back to what comes next.
        (Attempt(kind=COMET, reached=True, failure=CometError("HTTP 502")), True, False),
    ],
)
def test_attempt_outcomes(attempt: Attempt, falls_back: bool, refused: bool) -> None:
    assert attempt.falls_back is falls_back
    assert attempt.websocket_refused is refused


def test_failure_reason_keeps_the_servers_reason() -> None:
    info = ErrorInfo(code=40400, status_code=404, message="no such path")
    assert failure_reason(CometError("404", info)) == info
    assert failure_reason(RemoteProtocolError("bad frame")).code == 40000
    lost = failure_reason(trio.BrokenResourceError("reset"))
    assert (lost.code, lost.status_code) == (80003, 0) and "reset" in lost.message
    assert Attempt(kind=COMET).reason is None
