"""A zone's loss (a witness holder restarted) is told to each node when it next asks the witness,
which may be long after the witness decided it (chaos seeds 973895298, t 84.5 -> 97.2 s, and
1930366970, t 51.7 -> 64.6 and 73.7 s). Dated from when the node heard it, every log the node had
acquired or copied since the loss counted as older than the news: new epochs everywhere (zone_data_lost),
and publishes re-sent across them numbered twice (duplicated, serial_mismatch, publisher_order). The
node dates the loss from the witness's decision (``lost_age_ms``): only copies made before it are
suspect, and news older than the two retention windows it lasts is done with."""

from __future__ import annotations

from frontend.channel_log import ChannelLog
from tests.unit.frontend.test_takeover import cluster


def _log(created_ms: int) -> ChannelLog:
    lg = ChannelLog("ch", "0000000000000", max_messages=100, retention_ms=60_000)
    lg.created_ms = created_ms
    return lg


def test_a_loss_heard_late_is_dated_from_the_witness_decision() -> None:
    nodes, _, _ = cluster()
    channels = nodes["fe-a1"].channels
    now = 100_000
    channels.grant(now, "rt-w", now - 10, False, True, "b", lost=True, lost_age_ms=13_000)
    assert channels.zone_quorum.lost_since() == now - 13_000
    quorum = channels.zone_quorum
    assert not quorum.stale_after_loss(_log(now - 5_000), None)  # copied after the loss: continued
    assert channels.zone_quorum.stale_after_loss(_log(now - 20_000), None)  # copied before it: a new epoch


def test_news_of_a_loss_older_than_its_windows_changes_nothing() -> None:
    nodes, _, _ = cluster()
    channels = nodes["fe-a1"].channels
    now = 1_000_000
    age = 2 * channels.config.retention_ms + 1
    channels.grant(now, "rt-w", now - 10, False, True, "b", lost=True, lost_age_ms=age)
    assert channels.zone_quorum.lost_since() is None
    assert not channels.zone_quorum.stale_after_loss(_log(now - 500_000), None)
