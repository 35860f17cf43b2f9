"""Continuity trio client SDK: the Ably realtime protocol over WebSocket or Comet, with automatic resume.

::

    async with continuity.connect("ws://127.0.0.1:8080", key="app.key:secret") as conn:
        ch = conn.channel("chat")
        async with ch.subscribe() as sub:
            serials = await ch.publish("greeting", "hello")
            async for msg in sub:
                print(msg.serial, msg.data)

Transports: ``connect(..., transports=["web_socket", "comet"])`` (the default) tries a WebSocket
first and falls back to Comet, the HTTP long-poll of PROTOCOL.md section 6 (JSON only): in the same
connect attempt when the upgrade is refused or closed before it opens, from the next attempt on when
it timed out; ``["comet"]`` forces Comet.
``conn.transport`` is the one in use. A resume may cross from one transport to the other with the
same guarantees; set ``conn.transports`` to change the order for later attempts.
"""

from continuity.backoff import Backoff
from continuity.channel import Channel
from continuity.connection import Connection, connect, messages
from continuity.errors import (
    ChannelFailedError,
    ClientError,
    ConnectionClosedError,
    ConnectionFailedError,
    ConnectionSuspendedError,
    PublishError,
    SubscriptionOverflowError,
)
from continuity.events import (
    ChannelEvent,
    ChannelState,
    ConnectionEvent,
    ConnectionState,
    PresenceEvent,
    StateEvent,
)
from continuity.feed import EventStream, Feed, Subscription
from continuity.message import Message, OutboundMessage
from continuity.recovery import RecoveryKey
from continuity.session import ClientSession, SessionConfig
from kernel.errors import ErrorCode, ErrorInfo

__all__ = [
    "Backoff",
    "Channel",
    "ChannelEvent",
    "ChannelFailedError",
    "ChannelState",
    "ClientError",
    "ClientSession",
    "Connection",
    "ConnectionClosedError",
    "ConnectionEvent",
    "ConnectionFailedError",
    "ConnectionState",
    "ConnectionSuspendedError",
    "ErrorCode",
    "ErrorInfo",
    "EventStream",
    "Feed",
    "Message",
    "OutboundMessage",
    "PresenceEvent",
    "PublishError",
    "RecoveryKey",
    "SessionConfig",
    "StateEvent",
    "Subscription",
    "SubscriptionOverflowError",
    "connect",
    "messages",
]
