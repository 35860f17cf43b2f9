"""In-memory fakes shipped beside the real transports, for tests and simulations."""

from __future__ import annotations

from kernel import protocol as P
from kernel.protocol import Encoded, ProtocolMessage


class MemoryOutlet:
    """An Outlet that records frames; ``limit`` bounds it like a real outbox."""

    def __init__(self, fmt: P.Format = "json", limit: int = 1_000_000) -> None:
        self.fmt: P.Format = fmt
        self.limit = limit
        self.frames: list[Encoded] = []
        self.closed = False
        self.final: Encoded | None = None

    def send(self, frame: Encoded, *, force: bool = False) -> bool:
        if self.closed:
            return True
        if len(self.frames) >= self.limit and not force:
            return False
        self.frames.append(frame)
        return True

    def close(self, final: Encoded | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.final = final

    def drain(self) -> list[ProtocolMessage]:
        """Decode and forget everything queued so far, as the client would see it."""
        out = [P.decode(f.payload(self.fmt), self.fmt, max_size=1 << 30) for f in self.frames]
        self.frames.clear()
        return out
