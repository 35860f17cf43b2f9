"""Continuity trio client SDK: the Ably realtime protocol over WebSocket, with automatic resume.

::

    async with client.connect("ws://127.0.0.1:8080", key="app.key:secret") as conn:
        ch = conn.channel("chat")
        async with ch.subscribe() as sub:
            serials = await ch.publish("greeting", "hello")
            async for msg in sub:
                print(msg.serial, msg.data)
"""

from client.backoff import Backoff
from client.connection import Channel, Connection, EventStream, Feed, Subscription, connect, messages
from client.errors import (
    ChannelFailedError,
    ClientError,
    ConnectionClosedError,
    ConnectionFailedError,
    ConnectionSuspendedError,
    PublishError,
    SubscriptionOverflowError,
)
from client.events import ChannelEvent, ChannelState, ConnectionEvent, ConnectionState, StateEvent
from client.message import Message, OutboundMessage
from client.recovery import RecoveryKey
from client.session import ClientSession, SessionConfig
from frontend.errors import ErrorCode, ErrorInfo

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
    "PublishError",
    "RecoveryKey",
    "SessionConfig",
    "StateEvent",
    "Subscription",
    "SubscriptionOverflowError",
    "connect",
    "messages",
]
