"""Server-to-client WebSocket frames built once and shared by every subscriber.

Server frames are never masked (RFC 6455 section 5.1), so the bytes for one
message are the same on every socket; fan-out writes them as they are. We never
negotiate extensions (no permessage-deflate), so no per-socket state is needed.
"""

from __future__ import annotations

import struct

from kernel.protocol import Encoded, Format

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame carrying ``payload``."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        header = struct.pack("!BB", first, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


_OPCODES: dict[str, int] = {"json": OPCODE_TEXT, "msgpack": OPCODE_BINARY}


def frame_for(enc: Encoded, fmt: Format) -> bytes:
    """The WebSocket frame for ``enc`` in ``fmt`` (text for JSON, binary for msgpack), built once.

    The frame is kept in ``enc.ws[fmt]``; hot paths read that first and call this only on a miss.
    """
    data = enc.ws.get(fmt)
    if data is None:
        data = frame(_OPCODES[fmt], enc.payload(fmt))
        enc.ws[fmt] = data
    return data
