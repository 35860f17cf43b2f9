"""Idempotent publish by message id: keys, the index, and dedupe that travels with the log."""

from frontend.channel_log import ChannelLog
from frontend.idempotency import IdIndex, atomic_base, merge_serials, publish_keys, screen

ENV = {"action": 15, "channel": "c"}


def test_atomic_base_needs_base_colon_index_in_order():
    assert atomic_base(["b:0", "b:1", "b:2"]) == "b"
    assert atomic_base(["x:y:0", "x:y:1"]) == "x:y"
    assert atomic_base(["b:0"]) is None  # one message: keyed by its own id
    assert atomic_base(["b:0", "b:2"]) is None
    assert atomic_base(["b:1", "b:0"]) is None
    assert atomic_base([None, "b:1"]) is None
    assert publish_keys([{"id": "b:0"}, {"id": "b:1"}]) == ["batch:b", "batch:b"]
    assert publish_keys([{"id": "u"}, {}]) == ["id:u", None]


def _stored(serials, ids):
    return [{"id": i, "serial": s} for i, s in zip(ids, serials, strict=True)]


def test_a_remembered_publish_is_a_duplicate_with_its_serials():
    idx = IdIndex(window_ms=1000)
    idx.record(0, 0, _stored(["e:1", "e:2"], ["b:0", "b:1"]))
    assert idx.check([{"id": "b:0"}, {"id": "b:1"}]) == ({0: "e:1", 1: "e:2"}, [])
    known, fresh = idx.check([{"id": "c:0"}, {"id": "c:1"}])
    assert (known, fresh) == ({}, [0, 1])


def test_a_partly_known_plain_publish_drops_the_known_messages_but_an_atomic_batch_is_never_split():
    idx = IdIndex(window_ms=1000)
    idx.record(0, 0, _stored(["e:1"], ["u1"]))
    known, fresh = idx.check([{"id": "u1"}, {"id": "u2"}, {}])
    assert (known, fresh) == ({0: "e:1"}, [1, 2])
    assert merge_serials(3, known, fresh, ["e:2", "e:3"]) == ["e:1", "e:2", "e:3"]


def test_keys_expire_after_the_window_and_are_bounded():
    idx = IdIndex(window_ms=1000, max_keys=2)
    idx.record(0, 0, _stored(["e:1"], ["a"]))
    idx.expire(999)
    assert idx.check([{"id": "a"}])[1] == []
    idx.expire(1000)
    assert idx.check([{"id": "a"}])[1] == [0]
    for i, mid in enumerate(["x", "y", "z"]):
        idx.record(2000, 2000, _stored([f"e:{i}"], [mid]))
    assert len(idx) == 2 and idx.check([{"id": "x"}])[1] == [0]


def test_a_copy_built_from_a_snapshot_deduplicates_like_the_home():
    home = ChannelLog("c", "ep", max_messages=100, retention_ms=200_000)
    home.append(10, [{"id": "client-1", "data": 1}], dict(ENV), publisher="rest:a", msg_serial=-5)
    copy = ChannelLog.from_snapshot("c", home.snapshot(), now_ms=20, max_messages=100, retention_ms=200_000)
    assert copy.ids.check([{"id": "client-1"}]) == ({0: "ep:1"}, [])
    # Cut from the log (never made durable): forgotten, so a retry is appended again.
    home.truncate_after(0)
    assert home.ids.check([{"id": "client-1"}])[1] == [0]


def test_screen_answers_a_duplicate_after_its_pending_append_and_merges_a_partial_one():
    idx = IdIndex(window_ms=1000)
    idx.record(0, 0, _stored(["e:1"], ["u1"]))
    answers = []
    waited = []
    res = screen(
        idx, [{"id": "u1"}], lambda s, e: answers.append(s), lambda seq, cb: waited.append((seq, cb)) or True
    )
    assert res.fresh is None and res.duplicate and waited[0][0] == 1 and answers == []
    waited[0][1](["ignored"], None)  # the pending append is replicated: the duplicate gets its serials
    assert answers == [["e:1"]]
    res = screen(idx, [{"id": "u1"}, {"id": "u2"}], lambda s, e: answers.append(s), lambda seq, cb: False)
    assert res.fresh == [{"id": "u2"}] and res.duplicate
    res.done(["e:2"], None)
    assert answers[-1] == ["e:1", "e:2"]
