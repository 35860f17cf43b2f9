"""Feeds: the bounded queues behind subscriptions and event streams."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import trio

from continuity.errors import ClientError, SubscriptionOverflowError
from continuity.events import StateEvent
from continuity.message import Message

T = TypeVar("T")


class Feed(Generic[T]):
    """A bounded per-subscriber queue. Iterating ends when the source closes it.

    If the subscriber falls ``buffer`` items behind, iteration raises
    :class:`SubscriptionOverflowError` after the buffered items: nothing is
    dropped silently.
    """

    def __init__(self, buffer: int, predicate: Callable[[T], bool] | None = None) -> None:
        self._send, self._recv = trio.open_memory_channel[T](buffer)
        self._predicate = predicate
        self._error: ClientError | None = None

    def push(self, item: T) -> None:
        if self._error is not None or (self._predicate is not None and not self._predicate(item)):
            return
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            self.finish(SubscriptionOverflowError("subscriber fell too far behind"))
        except trio.ClosedResourceError:
            pass

    def finish(self, error: ClientError | None = None) -> None:
        if self._error is None:
            self._error = error
        self._send.close()

    async def receive(self) -> T:
        """The next item. Raises StopAsyncIteration at the end, or the error that ended the feed."""
        try:
            return await self._recv.receive()
        except trio.EndOfChannel:
            if self._error is not None:
                raise self._error from None
            raise StopAsyncIteration from None

    def __aiter__(self) -> Feed[T]:
        return self

    async def __anext__(self) -> T:
        return await self.receive()


Subscription = Feed[Message]
EventStream = Feed[StateEvent]
