"""Replay frames: a run of log entries packed into few MESSAGE frames for an attach or resume.

Pure: entries in, frames out. A frame's channelSerial is that of its last entry, so a client that stops
mid-replay resumes from the right place; presence entries go as their own PRESENCE frames, in log order.
"""

from __future__ import annotations

from frontend.channel_log import Entry
from kernel import protocol as P
from kernel.protocol import Action, Encoded, message_size

REPLAY_BATCH_MESSAGES = 256
REPLAY_BATCH_BYTES = 256 * 1024


def coalesce_replay(
    channel: str,
    entries: list[Entry],
    *,
    skip_publisher: str | None,
    messages: bool = True,
    presence: bool = False,
) -> list[tuple[Encoded, int]]:
    """Pack replayed entries into few MESSAGE frames (each message keeps its own id and serial).

    A frame's channelSerial is that of its last entry, so a client that stops mid-replay resumes
    from the right place. Message entries by ``skip_publisher`` (echo off) are left out, and so are
    message entries unless ``messages`` (SUBSCRIBE mode) and presence entries unless ``presence``
    (PRESENCE_SUBSCRIBE mode); a presence entry goes as its own PRESENCE frame, in log order.
    """
    frames: list[tuple[Encoded, int]] = []
    batch: list[P.Message] = []
    size = 0
    serial = ""

    def flush() -> None:
        nonlocal batch, size
        if batch:
            wire = {
                "action": int(Action.MESSAGE),
                "channel": channel,
                "channelSerial": serial,
                "messages": batch,
            }
            frames.append((Encoded(wire), len(batch)))
        batch, size = [], 0

    for entry in entries:
        if entry.is_presence:
            if presence:
                flush()
                frames.append((entry.frame, 1))
            continue
        if not messages or (skip_publisher is not None and entry.publisher == skip_publisher):
            continue
        msgs = entry.frame.wire["messages"]
        if batch and (len(batch) + len(msgs) > REPLAY_BATCH_MESSAGES or size > REPLAY_BATCH_BYTES):
            flush()
        batch.extend(msgs)
        size += sum(message_size(m) for m in msgs)
        serial = entry.frame.wire["channelSerial"]
    flush()
    return frames
