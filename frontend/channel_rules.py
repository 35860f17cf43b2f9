"""Channel rules Ably applies at attach and publish, as pure functions: which channel names are
refused (40010), the ``modes`` param and the default modes. Used by ``frontend.pubsub`` (and the
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
