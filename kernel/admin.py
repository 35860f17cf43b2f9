"""Who may see the admin surfaces (dashboard, cluster map, metrics, ``/admin/*``), and where.

Theory of operation. Each daemon has two kinds of listener: the client port (public: the
Ably protocol, ``/health``, ``/livez``, the demo) and, when ``admin_port`` is configured, an
admin listener on ``admin_host`` (127.0.0.1 by default, or a pod-internal port). With an admin
listener, the admin paths are served there only; without one they are served on the client port
(which ``kernel.config`` refuses outside dev mode unless that port is loopback or a token is set).
With ``admin_token``, every admin request must carry ``Authorization: Bearer <token>`` (the CLI,
Prometheus), or HTTP Basic auth whose password is the token (a browser on the dashboard: the 401
carries ``WWW-Authenticate: Basic``, so the browser asks once and its fetches reuse it), wherever it
arrives. ``AdminGate.check`` is that rule, pure.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from kernel.errors import ErrorCode, ErrorInfo
from kernel.http import header

BEARER = b"bearer "
BASIC = b"basic "
# Sent with a 401 so that a browser prompts (any user name, the token as password).
CHALLENGE = [(b"www-authenticate", b'Basic realm="Continuity admin", charset="UTF-8"')]


@dataclass(frozen=True, slots=True)
class AdminGate:
    """The admin-surface rule of one daemon."""

    admin_listener: str | None  # "host:port" of the admin listener, None: served on the client port
    token: str | None

    @classmethod
    def of(cls, admin_host: str, admin_port: int | None, token: str | None) -> AdminGate:
        """The gate of a daemon's config: its admin listener (if it has an admin port) and token."""
        listener = None if admin_port is None else f"{admin_host}:{admin_port}"
        return cls(admin_listener=listener, token=token)

    def check(self, headers: Iterable[tuple[bytes, bytes]], *, on_admin_listener: bool) -> ErrorInfo | None:
        """None if an admin request with ``headers`` may be answered here, else the error to send."""
        if self.admin_listener is not None and not on_admin_listener:
            return ErrorInfo.of(ErrorCode.NOT_FOUND, "admin surfaces are served on the admin listener only")
        if self.token is None:
            return None
        given = presented(header(headers, b"authorization") or b"")
        if given is not None and hmac.compare_digest(given, self.token.encode()):
            return None
        return ErrorInfo.of(ErrorCode.UNAUTHORIZED, "admin surfaces need Authorization: Bearer "
                            "<admin_token> (or Basic auth with the token as password)")


def presented(authorization: bytes) -> bytes | None:
    """The token an Authorization header carries: Bearer, or the password of Basic; else None."""
    if authorization[:len(BEARER)].lower() == BEARER:
        return authorization[len(BEARER):].strip()
    if authorization[:len(BASIC)].lower() == BASIC:
        try:
            decoded = base64.b64decode(authorization[len(BASIC):].strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2]
    return None


def bearer_headers(token: str | None) -> list[tuple[bytes, bytes]]:
    """The request header that passes a gate with ``token`` (none without a token)."""
    return [(b"authorization", b"Bearer " + token.encode())] if token else []
