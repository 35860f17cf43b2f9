"""Client-visible error codes (Ably's table) and the protocol error types.

Every code the server sends lives here once, with the HTTP status Ably pairs it
with. Nothing else in the code base spells a numeric error code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorCode(enum.IntEnum):
    """Ably error codes we emit. The numbers are the protocol; append only."""

    BAD_REQUEST = 40000
    MAX_MESSAGE_SIZE_EXCEEDED = 40009
    INVALID_CHANNEL_NAME = 40010
    INVALID_CLIENT_ID = 40012
    RATE_LIMITED = 40030  # too many channels on one connection
    UNAUTHORIZED = 40100
    INVALID_CREDENTIALS = 40101
    KEY_NOT_FOUND = 40400
    TOKEN_ERROR = 40140
    TOKEN_EXPIRED = 40142
    TOKEN_UNRECOGNISED = 40144
    CAPABILITY_DENIED = 40160
    INTERNAL = 50000
    INTERNAL_CHANNEL = 50001
    # A publish refused because its channel's home can place no copy in another zone and its side
    # of the cluster does not hold a majority of zones (docs/architecture.md, "Zone quorum").
    NO_ZONE_QUORUM = 50350
    CONNECTION_SUSPENDED = 80002
    DISCONNECTED = 80003
    CONNECTION_EXPIRED = 80008  # resume/recover of an unknown or expired connection
    CONNECTION_LIMIT = 80013
    CONNECTION_CLOSED = 80017
    INVALID_CONNECTION_KEY = 80018  # malformed or forged key
    SLOW_CONSUMER = 80020
    CHANNEL_OPERATION_FAILED = 90000
    CONTINUITY_LOST = 90003
    PRESENCE_REENTRY_FAILED = 91004  # RTP17e: an SDK's automatic re-entry of a member failed
    PRESENCE_UNSUPPORTED = 91000
    FORBIDDEN = 40300  # the router's pages: a dev-mode-only hook asked outside dev mode
    METHOD_NOT_ALLOWED = 40500  # the router's pages
    NOT_FOUND = 40400  # an alias of KEY_NOT_FOUND, for any missing page or resource
    INVALID_BODY = 40001  # REST: a request body that does not decode or has the wrong shape
    INVALID_PARAMETER = 40003  # REST: a query parameter or field out of range
    INCOMPATIBLE_CREDENTIALS = 40102  # a token request for another key than the one used
    TIMESTAMP_NOT_CURRENT = 40104  # a signed TokenRequest outside the clock window
    NONCE_REPLAYED = 40105  # a signed TokenRequest seen before
    PUBLISH_ON_BEHALF_FAILED = 40006  # a REST publish's connectionKey names no live connection
    TOKEN_REVOKED = 40141  # a token its key revoked (RSA17)
    TOKEN_AUTH_NOT_PERMITTED = 40162  # an operation that needs Basic (key) auth asked with a token
    TOKENS_NOT_REVOCABLE = 40163  # revokeTokens with a key not created with revocable tokens


_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.MAX_MESSAGE_SIZE_EXCEEDED: 400,
    ErrorCode.INVALID_CHANNEL_NAME: 400,
    ErrorCode.INVALID_CLIENT_ID: 400,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.INVALID_CREDENTIALS: 401,
    ErrorCode.KEY_NOT_FOUND: 404,
    ErrorCode.TOKEN_ERROR: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.TOKEN_UNRECOGNISED: 401,
    ErrorCode.CAPABILITY_DENIED: 401,
    ErrorCode.INTERNAL: 500,
    ErrorCode.INTERNAL_CHANNEL: 500,
    ErrorCode.NO_ZONE_QUORUM: 503,
    ErrorCode.CONNECTION_SUSPENDED: 503,
    ErrorCode.DISCONNECTED: 408,
    ErrorCode.CONNECTION_EXPIRED: 400,
    ErrorCode.CONNECTION_LIMIT: 429,
    ErrorCode.CONNECTION_CLOSED: 400,
    ErrorCode.INVALID_CONNECTION_KEY: 400,
    ErrorCode.SLOW_CONSUMER: 429,
    ErrorCode.CHANNEL_OPERATION_FAILED: 400,
    ErrorCode.PRESENCE_REENTRY_FAILED: 400,
    ErrorCode.CONTINUITY_LOST: 404,  # PROTOCOL 3.5: "Unable to recover channel (messages expired)"
    ErrorCode.PRESENCE_UNSUPPORTED: 400,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.INVALID_BODY: 400,
    ErrorCode.INVALID_PARAMETER: 400,
    ErrorCode.INCOMPATIBLE_CREDENTIALS: 401,
    ErrorCode.TIMESTAMP_NOT_CURRENT: 401,
    ErrorCode.NONCE_REPLAYED: 401,
    ErrorCode.PUBLISH_ON_BEHALF_FAILED: 400,
    ErrorCode.TOKEN_REVOKED: 401,
    ErrorCode.TOKEN_AUTH_NOT_PERMITTED: 401,
    ErrorCode.TOKENS_NOT_REVOCABLE: 401,
}


def status_for(code: ErrorCode) -> int:
    """Return the HTTP status Ably pairs with ``code``."""
    return _STATUS[code]


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An Ably ErrorInfo as it travels on the wire."""

    code: int
    status_code: int
    message: str

    @classmethod
    def of(cls, code: ErrorCode, message: str) -> ErrorInfo:
        return cls(code=int(code), status_code=status_for(code), message=message)

    def to_wire(self) -> dict[str, object]:
        return {"code": self.code, "statusCode": self.status_code, "message": self.message}

    @classmethod
    def from_wire(cls, raw: object) -> ErrorInfo | None:
        if not isinstance(raw, dict):
            return None
        code = raw.get("code")
        status = raw.get("statusCode")
        return cls(
            code=code if isinstance(code, int) else 0,
            status_code=status if isinstance(status, int) else 0,
            message=str(raw.get("message") or ""),
        )


class RefusedError(Exception):
    """A request refused as a whole with an Ably error code: a REST call, a token or key, a
    revocation, a sandbox request. ``info()`` is what the client is answered."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code

    def info(self) -> ErrorInfo:
        return ErrorInfo.of(self.code, str(self))


class ProtocolError(Exception):
    """Base for protocol errors; carries the Ably code to answer with."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code

    def info(self) -> ErrorInfo:
        return ErrorInfo.of(self.code, str(self))


class RemoteProtocolError(ProtocolError):
    """The peer sent something we cannot accept. Answer in-band with ``code``."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol forbids: our own bug."""
