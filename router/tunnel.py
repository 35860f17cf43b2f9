"""The dev-mode "tunnel" test hook: cut one client's traffic through this router for a few seconds.

Theory of operation. The demo page (``/demo/``) offers a button that simulates driving into a
tunnel: ``POST /dev/tunnel?connectionId=<id>&tag=<tag>&seconds=<s>`` (served only when the router
runs with ``dev = true``; 404 otherwise). The router then

- closes every live pipe (WebSocket) and in-flight forwarded request (Comet) of that client, with no
  response and no close frame, as a network cut would; and
- until the deadline, closes without answering every new request of that client (reconnects,
  resumes, Comet polls), so the client sees a dead network, not an error it could act on.

A request belongs to the client if its verified connection key (``resume=``, ``recover=``, or the
``/comet/<key>/`` path) names ``connectionId``, or if its query carries ``devtag=<tag>``: the page
passes its tag in ably-js ``transportParams``, so a fresh WebSocket, whose URL has no key yet, is
cut too. The frontend keeps the connection's state as for any dropped transport, so the client
resumes afterwards with the same connectionId and no loss.

Pure: no I/O, no clock (``now`` is passed in); the driver registers a cancel callback per request.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from kernel.keys import InvalidKey, KeySigner
from router.decide import RouteRequest

TAG_PARAM = "devtag"  # the query parameter a page's transportParams add to its connect URLs
MIN_SECONDS = 0.1
MAX_SECONDS = 60.0
MAX_TAG_LENGTH = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """Who a request belongs to, as far as the tunnel can tell: either part may be unknown."""

    connection_id: str | None = None
    tag: str | None = None

    def __bool__(self) -> bool:
        return bool(self.connection_id or self.tag)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cut:
    connection_id: str | None
    tag: str | None
    until: float  # the driver's clock, seconds

    def covers(self, match: Match) -> bool:
        return bool(
            (self.connection_id and self.connection_id == match.connection_id)
            or (self.tag and self.tag == match.tag)
        )


class Tunnels:
    """Active cuts and the live requests they can interrupt."""

    def __init__(self) -> None:
        self._cuts: list[Cut] = []
        self._live: dict[int, tuple[Match, Callable[[], None]]] = {}
        self._ids = itertools.count()

    def cut(self, now: float, *, connection_id: str | None, tag: str | None, seconds: float) -> int:
        """Cut ``connection_id``/``tag`` for ``seconds`` from ``now``; return how many live requests
        were interrupted. Raise ValueError for an empty target or ``seconds`` out of range."""
        if not connection_id and not tag:
            raise ValueError("tunnel needs a connectionId or a tag")
        if tag is not None and len(tag) > MAX_TAG_LENGTH:
            raise ValueError(f"tag longer than {MAX_TAG_LENGTH} characters")
        if not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be in [{MIN_SECONDS}, {MAX_SECONDS}]")
        cut = Cut(connection_id=connection_id or None, tag=tag or None, until=now + seconds)
        self._expire(now)
        self._cuts.append(cut)
        hit = [key for key, (match, _) in self._live.items() if cut.covers(match)]
        for key in hit:
            _, on_cut = self._live.pop(key)
            on_cut()
        return len(hit)

    def blocked(self, now: float, match: Match) -> bool:
        """Whether a new request of ``match`` must be refused (closed unanswered) at ``now``."""
        self._expire(now)
        return bool(match) and any(c.covers(match) for c in self._cuts)

    @contextmanager
    def watching(self, match: Match, on_cut: Callable[[], None]) -> Iterator[None]:
        """Within the block, a cut covering ``match`` calls ``on_cut`` (once)."""
        if not match:
            yield
            return
        key = next(self._ids)
        self._live[key] = (match, on_cut)
        try:
            yield
        finally:
            self._live.pop(key, None)

    @property
    def live_count(self) -> int:
        return len(self._live)

    def _expire(self, now: float) -> None:
        self._cuts = [c for c in self._cuts if c.until > now]


def match_of(request: RouteRequest, signer: KeySigner) -> Match:
    """Who ``request`` belongs to: the connection its verified key names, and its ``devtag``."""
    connection_id = None
    text = request.carried_key()
    if text:
        try:
            connection_id = signer.verify(text).connection_id
        except InvalidKey:
            pass
    tag = request.params.get(TAG_PARAM) or None
    return Match(connection_id=connection_id, tag=tag)
