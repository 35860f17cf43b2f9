"""The frontend node as its parts see it: Protocols that break the node's import knot.

``FrontendNode`` (``node.py``) owns the sessions, the channel service and three parts built on it:
``Ownership`` (connection-state copies, handover, discards), ``Takeover`` and ``Presence``. Each part
is handed the node and reaches the others through it, and the node's channel half (``pubsub.py``,
``channel_modes.py``, each with its own Protocol for the node) queues frames on transports. They
annotate against the Protocols here instead of importing ``node.py`` (which imports them) or one
another:

- ``Outlet``: a transport's outbox;
- ``OwnershipPart``, ``PresencePart``, ``TakeoverPart``: what one part calls on another;
- ``NodeParts``: the node's state and the calls its parts make on it.

``FrontendNode`` satisfies ``NodeParts`` structurally; mypy checks it where the parts are built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from frontend.channel_log import Entry
from frontend.channels import ChannelService
from frontend.config import FrontendConfig
from frontend.metrics import Metrics
from frontend.session import Session
from frontend.session_copies import SessionCopies, Tombstones
from kernel import protocol as P
from kernel.errors import ErrorCode
from kernel.keys import KeySigner
from kernel.protocol import Action, Encoded


class Outlet(Protocol):
    """A transport's outbox, as the node sees it."""

    fmt: P.Format

    def send(self, frame: Encoded, *, force: bool = False) -> bool:
        """Queue a frame; False when the outbox is full (the node then cuts it).

        ``force`` queues past the limit: a replay, whose size the channel log already bounds.
        """
        ...

    def close(self, final: Encoded | None) -> None:
        """Drop queued frames, send ``final`` if given, and close the transport."""
        ...


class OwnershipPart(Protocol):
    """What takeover and presence call on ``ownership.Ownership``."""

    @property
    def copies(self) -> SessionCopies: ...

    @property
    def tombstones(self) -> Tombstones: ...

    def replicate(self, s: Session) -> None: ...

    def adopt(self, now_ms: int, state: dict[str, Any], min_epoch: int) -> Session: ...

    def remember_discard(self, peer: str | None, conn_id: str, epoch: int) -> None: ...


class PresencePart(Protocol):
    """What ownership calls on ``presence.Presence`` (the copy watches follow the copies held here)."""

    def detached(self, now_ms: int, s: Session) -> None: ...

    def copy_read(self, now_ms: int, conn: str) -> None: ...

    def copy_put(self, now_ms: int, owner: str, state: dict[str, Any]) -> None: ...

    def copy_discarded(self, conn: str, below_epoch: int) -> None: ...


class TakeoverPart(Protocol):
    """What ownership calls on ``takeover.Takeover``."""

    def defer(self, conn_id: str, fn: Callable[[], None]) -> bool: ...


class NodeParts(Protocol):
    """The node's state its parts read, and the calls they make on it (``FrontendNode``)."""

    @property
    def node_id(self) -> str: ...

    @property
    def config(self) -> FrontendConfig: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def signer(self) -> KeySigner: ...

    @property
    def channels(self) -> ChannelService: ...

    @property
    def sessions(self) -> dict[str, Session]: ...

    @property
    def ownership(self) -> OwnershipPart: ...

    @property
    def presence(self) -> PresencePart: ...

    @property
    def takeover(self) -> TakeoverPart: ...

    # The node's session-expiry heap of (due, connectionId): an adopted session is pushed on it.
    _expiry: list[tuple[int, str]]

    def drop_session(self, s: Session) -> None: ...

    def fan_out(self, now_ms: int, channel: str, entry: Entry, publisher: str | None) -> None: ...

    def _send(self, now_ms: int, s: Session, frame: Encoded) -> bool: ...

    def _flush_acks(self, now_ms: int, s: Session) -> None: ...

    def _channel_error(
        self, now_ms: int, s: Session, action: Action, name: str, code: ErrorCode, msg: str
    ) -> None: ...
