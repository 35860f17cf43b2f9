"""The application's view of a Message (TM2), and payload encoding (RSL4/RSL6).

Publishing: ``str`` travels as is, ``bytes`` as msgpack binary (or base64 in
JSON, done by the codec), and ``dict``/``list`` as JSON text with encoding
``json``. Receiving decodes the ``encoding`` chain right to left.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

Data = str | bytes | dict[str, Any] | list[Any] | int | float | bool | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One received message. ``serial`` and ``channel_serial`` are ``"<epoch>:<seq>"``."""

    channel: str
    name: str | None = None
    data: Data = None
    id: str | None = None
    client_id: str | None = None
    connection_id: str | None = None
    timestamp: int | None = None
    serial: str | None = None
    channel_serial: str | None = None
    encoding: str | None = None
    extras: dict[str, Any] | None = None

    @classmethod
    def from_wire(cls, channel: str, raw: dict[str, Any], channel_serial: str | None) -> Message:
        data, encoding = decode_data(raw.get("data"), raw.get("encoding"))
        return cls(
            channel=channel,
            name=raw.get("name"),
            data=data,
            id=raw.get("id"),
            client_id=raw.get("clientId"),
            connection_id=raw.get("connectionId"),
            timestamp=raw.get("timestamp"),
            serial=raw.get("serial"),
            channel_serial=channel_serial,
            encoding=encoding,
            extras=raw.get("extras"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundMessage:
    """A message to publish; ``ch.publish`` also accepts ``(name, data)`` or a list of these."""

    name: str | None = None
    data: Data = None
    id: str | None = None
    client_id: str | None = None
    extras: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name is not None:
            out["name"] = self.name
        data, encoding = encode_data(self.data)
        if data is not None:
            out["data"] = data
        if encoding is not None:
            out["encoding"] = encoding
        if self.id is not None:
            out["id"] = self.id
        if self.client_id is not None:
            out["clientId"] = self.client_id
        if self.extras is not None:
            out["extras"] = self.extras
        return out


def encode_data(data: Data) -> tuple[Any, str | None]:
    """Return ``(wire data, encoding)`` for an application payload."""
    if data is None or isinstance(data, (str, bytes)):
        return data, None
    if isinstance(data, bytearray):
        return bytes(data), None
    if isinstance(data, (dict, list)):
        return json.dumps(data, separators=(",", ":")), "json"
    if isinstance(data, (int, float, bool)):
        return json.dumps(data), "json"
    raise TypeError(f"cannot publish data of type {type(data).__name__}")


def decode_data(data: Any, encoding: str | None) -> tuple[Any, str | None]:
    """Undo the ``encoding`` chain we understand (base64, utf-8, json), right to left.

    Returns the decoded data and whatever part of the chain is left (e.g. a
    cipher step we cannot undo), or None when fully decoded.
    """
    if not encoding:
        return data, None
    steps = encoding.split("/")
    while steps:
        step = steps[-1]
        try:
            if step == "base64" and isinstance(data, str):
                data = base64.b64decode(data)
            elif step == "utf-8" and isinstance(data, (bytes, bytearray)):
                data = bytes(data).decode("utf-8")
            elif step == "json" and isinstance(data, (str, bytes, bytearray)):
                data = json.loads(data)
            else:
                break
        except ValueError:
            break
        steps.pop()
    return data, "/".join(steps) or None
