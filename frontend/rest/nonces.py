"""Cluster-wide replay refusal for signed TokenRequests.

A TokenRequest's ``(keyName, nonce)`` is remembered by one frontend per key, the *nonce home*:
placement's home for the pseudo-channel ``[tokens]<keyName>``, so every frontend asks the same
one and a request replayed to any frontend is refused (40105). The check is one peer request
(op ``token_nonce``). If the nonce home cannot be reached within ``ASK_TIMEOUT_S``, the asking
frontend checks its own memory instead and logs it: availability of token issue is kept, and a
replay then needs both a captured request and a failed nonce home within the clock window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
import trio

from frontend import peerops as O
from frontend.tokens import NonceMemory

if TYPE_CHECKING:
    from frontend.node import FrontendNode

log = structlog.get_logger("continuity.frontend")

ASK_TIMEOUT_S = 2.0


class NonceGuard:
    def __init__(self, node: FrontendNode, now_ms: Callable[[], int]) -> None:
        self.node = node
        self.now_ms = now_ms
        self.memory = NonceMemory()
        node.peer_ops["token_nonce"] = self._serve

    def _serve(self, now_ms: int, src: str, args: dict[str, Any], reply: Callable[[bool, Any], None]) -> None:
        key_name, nonce = args.get("key"), args.get("nonce")
        if not isinstance(key_name, str) or not isinstance(nonce, str):
            reply(False, O.Refused(O.Refusal.BAD_REQUEST, "token_nonce needs a key and a nonce"))
            return
        reply(True, self.memory.first_use(now_ms, key_name, nonce))

    async def first_use(self, key_name: str, nonce: str) -> bool:
        """Record the nonce at its home; False when it was used already (anywhere in the cluster)."""
        node = self.node
        home = node.channels.placement.channel_home(f"[tokens]{key_name}")
        bus = node.channels.bus
        if home is None or home == node.node_id or bus is None:
            return self.memory.first_use(self.now_ms(), key_name, nonce)
        answer: list[Any] = []
        event = trio.Event()

        def on_reply(ok: bool, res: Any) -> None:
            answer.append(res if ok else None)
            event.set()

        op = O.RestCall(kind="token_nonce", args={"key": key_name, "nonce": nonce})
        bus.request(home, op, on_reply, ASK_TIMEOUT_S)
        with trio.move_on_after(ASK_TIMEOUT_S + 0.5):
            await event.wait()
        if answer and isinstance(answer[0], bool):
            return answer[0]
        log.warning("rest.nonce_home_unreachable", home=home, key_name=key_name)
        return self.memory.first_use(self.now_ms(), key_name, nonce)
