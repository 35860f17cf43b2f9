"""Who may see the admin surfaces (dashboard, cluster map, metrics, ``/admin/*``), and where.

Theory of operation. Each daemon has two kinds of listener: the client port (public: the
Ably protocol, ``/health``, ``/livez``, the demo) and, when ``admin_port`` is configured, an
admin listener on ``admin_host`` (127.0.0.1 by default, or a pod-internal port). With an admin
listener, the admin paths are served there only; without one they are served on the client port
(which ``kernel.config`` refuses outside dev mode unless that port is loopback or a token is set).
With ``admin_token``, every admin request must carry ``Authorization: Bearer <token>``, wherever
it arrives. ``AdminGate.check`` is that rule, pure.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from kernel.errors import ErrorCode, ErrorInfo
from kernel.http import header

BEARER = b"bearer "


@dataclass(frozen=True, slots=True)
class AdminGate:
    """The admin-surface rule of one daemon."""

    admin_listener: str | None  # "host:port" of the admin listener, None: served on the client port
    token: str | None

    def check(self, headers: Iterable[tuple[bytes, bytes]], *, on_admin_listener: bool) -> ErrorInfo | None:
        """None if an admin request with ``headers`` may be answered here, else the error to send."""
        if self.admin_listener is not None and not on_admin_listener:
            return ErrorInfo.of(ErrorCode.NOT_FOUND, "admin surfaces are served on the admin listener only")
        if self.token is None:
            return None
        given = header(headers, b"authorization") or b""
        if given[: len(BEARER)].lower() == BEARER and hmac.compare_digest(
                given[len(BEARER):].strip(), self.token.encode()):
            return None
        return ErrorInfo.of(ErrorCode.UNAUTHORIZED, "admin surfaces need Authorization: Bearer <admin_token>")


def bearer_headers(token: str | None) -> list[tuple[bytes, bytes]]:
    """The request header that passes a gate with ``token`` (none without a token)."""
    return [(b"authorization", b"Bearer " + token.encode())] if token else []
