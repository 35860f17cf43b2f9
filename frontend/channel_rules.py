"""Channel rules Ably applies at attach and publish, as pure functions: which channel names are
refused (40010) and which are features this server lacks (derived channels), the message actions a
publish may carry, the ``modes`` param and the default modes. Used by ``frontend.pubsub`` (and the
presence and REST layers for names). The other params and rewind: ``frontend.channel_params``.
"""

from __future__ import annotations

from collections.abc import Mapping

from kernel import protocol as P
from kernel.protocol import Flag

MAX_CHANNEL_NAME = 1024


def channel_name_problem(name: str) -> str | None:
    """Why Ably refuses ``name`` (40010), or None: empty, too long, a leading ``:`` (reserved), or a
    ``[qualifier]`` prefix that is not closed, is empty, or qualifies an empty name."""
    if not name:
        return "invalid channel name: empty"
    if len(name) > MAX_CHANNEL_NAME:
        return f"invalid channel name: longer than {MAX_CHANNEL_NAME} characters"
    if name.startswith(":"):
        return f"invalid channel name: {name!r} starts with ':'"
    if name.startswith("["):
        qualifier, sep, rest = name[1:].partition("]")
        if not sep or not qualifier or not rest or rest.startswith(":"):
            return f"invalid channel name: malformed qualifier in {name!r}"
    return None


def unsupported_qualifier(name: str) -> str | None:
    """Why a well-formed name is refused as a feature this server lacks (40000), or None: a derived
    channel (``[filter=...]name``, ``channels.getDerived``) would otherwise attach a separate channel
    of that literal name and receive nothing of ``name``."""
    if name.startswith("[filter="):
        return f"derived channels ([filter=...]) are not supported by this server: {name!r}"
    return None


# TM5: a message's action on the wire. Clients publish creates (0, or no action); updates, deletes
# and appends (1, 2, 5) are refused rather than stored as new messages, and meta and summaries (3, 4)
# come from the server only.
_ACTION_NAMES = {
    1: "message.update",
    2: "message.delete",
    3: "meta",
    4: "message.summary",
    5: "message.append",
}


def message_action_problem(messages: list[P.Message]) -> str | None:
    """Why a publish is refused for its messages' actions (40000), or None when each is a create."""
    for m in messages:
        action = m.get("action")
        if action in (None, 0):
            continue
        what = _ACTION_NAMES.get(action) if isinstance(action, int) else None
        if what in ("message.update", "message.delete", "message.append"):
            return f"{what}: message updates, deletes and appends are not supported by this server"
        return f"a client may not publish a message with action {what or action!r}"
    return None


_MODE_NAMES = {
    "presence": Flag.PRESENCE,
    "publish": Flag.PUBLISH,
    "subscribe": Flag.SUBSCRIBE,
    "presence_subscribe": Flag.PRESENCE_SUBSCRIBE,
    "annotation_publish": Flag.ANNOTATION_PUBLISH,
    "annotation_subscribe": Flag.ANNOTATION_SUBSCRIBE,
    "object_subscribe": Flag.OBJECT_SUBSCRIBE,
    "object_publish": Flag.OBJECT_PUBLISH,
}


def modes_param(params: Mapping[str, str] | None) -> int:
    """The ``modes`` channel param (``"presence,subscribe"``) as mode flags; 0 when absent.
    Raises ValueError naming an unknown mode."""
    raw = (params or {}).get("modes")
    if raw is None:
        return 0
    flags = 0
    for mode in filter(None, (m.strip().lower() for m in raw.split(","))):
        if mode not in _MODE_NAMES:
            raise ValueError(f"unknown channel mode {mode!r} in the modes param")
        flags |= _MODE_NAMES[mode]
    return flags


# The modes of an ATTACH that names none, as Ably grants them (ably-js's channel.test.js checks):
# annotation_publish is among them, though annotations themselves are refused (not supported).
DEFAULT_MODES = P.DEFAULT_MODES | Flag.ANNOTATION_PUBLISH
