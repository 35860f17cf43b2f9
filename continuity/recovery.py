"""Recovery keys in ably-js's ``createRecoveryKey()`` JSON shape (RTN16g)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryKey:
    """``{"connectionKey": ..., "msgSerial": N, "channelSerials": {channel: serial}}``."""

    connection_key: str
    msg_serial: int
    channel_serials: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"connectionKey": self.connection_key, "msgSerial": self.msg_serial,
             "channelSerials": self.channel_serials},
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, text: str) -> RecoveryKey | None:
        """Parse a recovery key; a malformed one gives None (ignored, as RTN16f1 says)."""
        try:
            raw = json.loads(text)
        except ValueError:
            return None
        if not isinstance(raw, dict):
            return None
        key = raw.get("connectionKey")
        serial = raw.get("msgSerial")
        serials = raw.get("channelSerials") or {}
        if not isinstance(key, str) or not key or isinstance(serial, bool) or not isinstance(serial, int):
            return None
        if serial < 0 or not isinstance(serials, dict):
            return None
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in serials.items()):
            return None
        return cls(connection_key=key, msg_serial=serial, channel_serials=dict(serials))
