"""ChannelLog: gapless stamping, replay coverage, retention edges, dedupe."""

from frontend.channel_log import ChannelLog, parse_serial

ENV = {"action": 15, "channel": "c"}


def make(max_messages: int = 100, retention_ms: int = 1000) -> ChannelLog:
    return ChannelLog("c", "ep", max_messages=max_messages, retention_ms=retention_ms)


def append(lg: ChannelLog, now: int, n: int = 1, *, conn: str = "C", msg_serial: int | None = None):
    return lg.append(now, [{"data": i} for i in range(n)], dict(ENV), publisher=conn, msg_serial=msg_serial)


def test_serials_are_gapless_and_multi_message_entries_take_one_seq_each():
    lg = make()
    s1, _ = append(lg, 0, 1)
    s2, e2 = append(lg, 0, 3)
    assert s1 == ["ep:1"]
    assert s2 == ["ep:2", "ep:3", "ep:4"]
    assert e2.frame.wire["channelSerial"] == "ep:4"
    assert [m["serial"] for m in e2.frame.wire["messages"]] == s2
    assert lg.last_serial == "ep:4"


def test_replay_after_covered_serial_returns_exactly_the_missed_entries():
    lg = make()
    for t in range(5):
        append(lg, t)
    replay = lg.replay_after("ep:2")
    assert replay is not None
    assert [e.first_seq for e in replay] == [3, 4, 5]


def test_replay_after_last_serial_is_empty_but_covered():
    lg = make()
    append(lg, 0)
    assert lg.replay_after("ep:1") == []


def test_replay_from_empty_log_origin():
    lg = make()
    assert lg.replay_after("ep:0") == []
    append(lg, 0, 2)
    assert [e.first_seq for e in lg.replay_after("ep:0") or []] == [1]


def test_other_epoch_future_serial_and_garbage_are_not_covered():
    lg = make()
    append(lg, 0)
    assert lg.replay_after("other:1") is None
    assert lg.replay_after("ep:2") is None
    assert lg.replay_after("garbage") is None
    assert lg.replay_after("ep:-1") is None


def test_serial_inside_a_multi_message_entry_is_not_a_boundary():
    lg = make()
    append(lg, 0, 3)  # seqs 1..3
    assert lg.replay_after("ep:2") is None


def test_time_retention_drops_old_entries_then_their_serials_lose_continuity():
    lg = make(retention_ms=1000)
    append(lg, 0)  # seq 1 at t=0
    append(lg, 500)  # seq 2 at t=500
    lg.expire(1000)  # seq 1 is exactly retention old: dropped
    assert lg.replay_after("ep:0") is None
    assert [e.first_seq for e in lg.replay_after("ep:1") or []] == [2]
    lg.expire(1499)
    assert lg.replay_after("ep:1") is not None
    lg.expire(1500)
    assert lg.replay_after("ep:1") is None
    assert lg.replay_after("ep:2") == []  # caught up: nothing missed, still continuous


def test_count_limit_bounds_the_ring():
    lg = make(max_messages=10, retention_ms=10**9)
    for t in range(25):
        append(lg, t)
    assert lg.retained_messages == 10
    assert lg.replay_after("ep:14") is None
    assert len(lg.replay_after("ep:15") or []) == 10


def test_republish_with_same_connection_and_msg_serial_is_remembered():
    lg = make()
    serials, _ = append(lg, 0, 2, conn="A", msg_serial=7)
    assert lg.lookup("A", 7) == serials
    assert lg.lookup("A", 8) is None
    assert lg.lookup("B", 7) is None


def test_dedupe_memory_expires_with_retention():
    lg = make(retention_ms=100)
    append(lg, 0, conn="A", msg_serial=0)
    lg.expire(99)
    assert lg.lookup("A", 0) is not None
    lg.expire(100)
    assert lg.lookup("A", 0) is None


def test_next_deadline_tracks_oldest_entry():
    lg = make(retention_ms=100)
    assert lg.next_deadline() is None
    append(lg, 10)
    assert lg.next_deadline() == 110


def test_parse_serial():
    assert parse_serial("ab:12") == ("ab", 12)
    assert parse_serial("a:b:3") == ("a:b", 3)
    assert parse_serial(":3") is None
    assert parse_serial("ab:") is None
    assert parse_serial("ab:x") is None


def test_install_accepts_repeats_but_refuses_another_entry_under_held_serials():
    """A replica's copy: the same entry again is fine; a stale home's *different* entry under
    serials already held, or an entry of another epoch, is refused (chaos seed 1: split brain)."""
    home, stale = make(), make()
    for t in range(3):
        append(home, t, conn="A", msg_serial=t)
    append(stale, 0, conn="A", msg_serial=0)
    copy = make()
    for e in home.replay_after("ep:0") or []:
        assert copy.install(0, e)
    first = (home.replay_after("ep:0") or [])[0]
    assert copy.install(0, first)  # a repeat
    _, other = append(stale, 1, conn="B", msg_serial=7)  # numbered ep:2 again, elsewhere
    assert other.first_seq == 2
    assert not copy.install(1, other)
    foreign = ChannelLog("c", "zz", max_messages=10, retention_ms=1000)
    for _ in range(4):
        _, e = append(foreign, 0)
    assert not copy.install(2, e)
    assert copy.last_seq == 3


def test_logs_that_numbered_the_same_serial_for_different_publishes_disagree():
    """A replica must refuse a stale home's snapshot that reuses a serial it holds for another
    publish, even at the same length (chaos seed 20240611: serial 294 ACKed twice)."""
    a, b = make(), make()
    for t in range(3):
        append(a, t, conn="A", msg_serial=t)
        append(b, t, conn="A", msg_serial=t)
    assert a.agrees_with(b) and b.agrees_with(a)
    append(a, 3, conn="A", msg_serial=3)
    append(b, 3, conn="B", msg_serial=9)
    assert not a.agrees_with(b) and not b.agrees_with(a)
    shorter = make()
    append(shorter, 0, conn="A", msg_serial=0)
    assert a.agrees_with(shorter)


def _copy(lg: ChannelLog) -> ChannelLog:
    return ChannelLog.from_snapshot("c", lg.snapshot(), now_ms=0, max_messages=100, retention_ms=1000)


def test_a_serial_seen_past_the_end_supersedes_the_copy_and_travels_with_it():
    """A client holding serial 5 of this epoch shows a copy ending at 3 is stale (frontend.sim seeds
    3038, 7315); another epoch's serial or one the copy holds proves nothing."""
    lg = make()
    for t in range(3):
        append(lg, t)
    lg.note_serial("other:9")
    lg.note_serial("ep:2")
    assert not lg.superseded()
    lg.note_serial("ep:5")
    assert lg.superseded() and lg.ahead_seq == 5
    copy = _copy(lg)
    assert copy.superseded() and copy.ahead_seq == 5
    longer = make()
    for t in range(6):
        append(longer, t)
    longer.learn_from(copy)
    assert not longer.superseded()  # it holds serial 5 itself


def test_a_copy_knows_how_far_its_home_committed():
    """Entries past the home's commit point are in doubt for the next home (seeds 2981, 6262); a
    snapshot from an older sender, without the field, counts as committed whole."""
    lg = make()
    for t in range(4):
        append(lg, t)
    lg.learn_committed(2)
    assert _copy(lg).known_committed == 2
    lg.learn_committed(99)
    assert lg.known_committed == lg.last_seq == 4
    snap = lg.snapshot()
    del snap["committed"]
    old = ChannelLog.from_snapshot("c", snap, now_ms=0, max_messages=100, retention_ms=1000)
    assert old.known_committed == 4


def test_a_new_epoch_keeps_the_serials_its_replaced_copy_gave_committed_publishes():
    """frontend.sim --witness seed 531: a new epoch started in place of a copy that may miss entries
    answers a re-send of a publish the copy holds committed with the serial it was delivered under,
    and keeps doing so from its own copies (snapshots); an entry in doubt is not kept."""
    old = make(retention_ms=1000)
    first, _ = append(old, 10, conn="A", msg_serial=1)
    doubt, _ = append(old, 11, conn="A", msg_serial=2)
    old.learn_committed(1)
    new = ChannelLog("c", "ep2", max_messages=100, retention_ms=1000)
    new.inherit_publishes(old)
    assert new.lookup("A", 1) == first and new.lookup("A", 2) is None and doubt
    numbered, _ = append(new, 12, conn="B", msg_serial=0)
    new.learn_committed(1)
    copy = _copy(new)
    assert copy.lookup("A", 1) == first and copy.lookup("B", 0) == numbered
    assert len(copy) == 1 and copy.last_seq == 1  # the inherited record is no entry of this epoch
    third = ChannelLog("c", "ep3", max_messages=100, retention_ms=1000)
    third.inherit_publishes(copy)  # carried on through a second new epoch
    assert third.lookup("A", 1) == first and third.lookup("B", 0) == numbered
    copy.expire(1010)
    assert copy.lookup("A", 1) is None and copy.lookup("B", 0) is not None  # the dedupe window still holds
