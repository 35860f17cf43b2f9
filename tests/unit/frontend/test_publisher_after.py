"""Publisher order across a resume's re-sends (``frontend/publishing.py``): a publish names in
``after`` the nearest earlier unresolved msgSerial of its connection on the channel, whatever order
the re-sends came in (frontend.sim seed 3217: msgSerial 14's retry named 11, and the home numbered
14 before 12 and 13)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from frontend import peerops as O
from frontend.config import FrontendConfig
from frontend.home_records import Retries
from frontend.metrics import Metrics
from frontend.publishing import Publisher

CONN, CHANNEL = "conn-1", "ch0"


class _RecordingBus:
    """Holds each request to the remote home unanswered, as a home cut off mid-flight would."""

    def __init__(self) -> None:
        self.sent: list[O.Publish] = []

    def request(self, peer: str, op: Any, on_reply: Callable[[bool, Any], None], timeout_s: float) -> None:
        self.sent.append(op)


class _Host:
    node_id = "fe-a1"

    def __init__(self) -> None:
        self.config = FrontendConfig(node_id="fe-a1")
        self.metrics = Metrics()
        self.bus = _RecordingBus()
        self.homes: dict[str, Any] = {}
        self.now_ms = 0

    def home_of(self, channel: str) -> str:
        return "fe-b1"  # remote: every attempt goes out on the bus

    def quorum(self, now_ms: int | None = None) -> Any:
        raise AssertionError("not asked while no attempt is refused")

    def minority_known(self, now_ms: int | None = None) -> bool:
        return False

    def _retry(self, now_ms: int, deadline_ms: int | None, again: Any, give_up: Any) -> None:
        raise AssertionError("no attempt is answered here")


def _publish(publisher: Publisher, msg_serial: int) -> None:
    pub = O.Publish(channel=CHANNEL, connection_id=CONN, msg_serial=msg_serial, messages=[], envelope={})
    publisher.publish(1_000 + msg_serial, pub, lambda serials, error: None)


def test_a_publish_names_the_nearest_earlier_unresolved_one_after_out_of_order_resends() -> None:
    host = _Host()
    publisher = Publisher(host, Retries(), home_side=None)  # type: ignore[arg-type]
    for msg_serial in (6, 7, 11, 12, 13):
        _publish(publisher, msg_serial)
    # A resume: the client re-sends every unACKed publish, and these re-sends go out first.
    for msg_serial in (6, 7, 11):
        _publish(publisher, msg_serial)
    _publish(publisher, 14)
    after = {(p.msg_serial, p.after) for p in host.bus.sent}
    assert (14, 13) in after, sorted(after)
    assert (14, 11) not in after
    assert (11, 7) in after and (6, None) in after and (12, 11) in after
