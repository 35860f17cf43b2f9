"""Errors the client SDK raises. Each carries the Ably ``ErrorInfo`` when the server sent one."""

from __future__ import annotations

from kernel.errors import ErrorCode, ErrorInfo


class ClientError(Exception):
    """Base class of every error this SDK raises."""

    def __init__(self, message: str, reason: ErrorInfo | None = None) -> None:
        super().__init__(message if reason is None else f"{message}: {reason.code} {reason.message}")
        self.reason = reason

    @property
    def code(self) -> int | None:
        """The Ably error code, when there is one."""
        return None if self.reason is None else self.reason.code


class PublishError(ClientError):
    """The server NACKed a publish (40009 size, 40160 capability, 40012 clientId, ...)."""


class ConnectionFailedError(ClientError):
    """The connection reached FAILED (a fatal ERROR) or could not be established in time."""


class ConnectionSuspendedError(ClientError):
    """The connection stayed disconnected for longer than connectionStateTtl (80002)."""


class ConnectionClosedError(ClientError):
    """The operation needs an open connection, but it was closed."""


class ChannelFailedError(ClientError):
    """The server refused or failed a channel (a channel ERROR, e.g. 40160)."""


class SubscriptionOverflowError(ClientError):
    """A subscriber fell more than ``buffer`` messages behind; messages would have been lost."""


def local_error(code: ErrorCode, message: str) -> ErrorInfo:
    """An ErrorInfo raised by the client itself (no server involved)."""
    return ErrorInfo.of(code, message)
