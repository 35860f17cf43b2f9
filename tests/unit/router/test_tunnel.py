"""The dev-mode tunnel hook's pure core (router/tunnel.py): who a cut covers, for how long."""

from __future__ import annotations

import pytest

from kernel.keys import ConnectionKey, KeySigner
from router.decide import RouteRequest
from router.tunnel import MAX_SECONDS, Match, Tunnels, match_of

SECRET = "unit-cluster-secret-0123456789"


def test_a_cut_interrupts_live_requests_of_that_connection_only() -> None:
    tunnels = Tunnels()
    hits: list[str] = []
    with (
        tunnels.watching(Match(connection_id="c1"), lambda: hits.append("c1")),
        tunnels.watching(Match(tag="t2"), lambda: hits.append("t2")),
    ):
        assert tunnels.cut(0.0, connection_id="c1", tag=None, seconds=3) == 1
        assert hits == ["c1"]
        assert tunnels.live_count == 1  # the interrupted one is no longer watched
    assert tunnels.live_count == 0


def test_a_cut_by_tag_covers_a_fresh_connect_that_has_no_key_yet() -> None:
    tunnels = Tunnels()
    tunnels.cut(10.0, connection_id="c1", tag="page-1", seconds=3)
    assert tunnels.blocked(11.0, Match(tag="page-1"))
    assert tunnels.blocked(11.0, Match(connection_id="c1", tag="other"))
    assert not tunnels.blocked(11.0, Match(connection_id="c2", tag="page-2"))
    assert not tunnels.blocked(11.0, Match())


def test_a_cut_ends_at_its_deadline() -> None:
    tunnels = Tunnels()
    tunnels.cut(10.0, connection_id="c1", tag=None, seconds=3)
    assert tunnels.blocked(12.999, Match(connection_id="c1"))
    assert not tunnels.blocked(13.0, Match(connection_id="c1"))


@pytest.mark.parametrize(
    ("connection_id", "tag", "seconds"),
    [(None, None, 3), ("", "", 3), ("c1", None, 0), ("c1", None, MAX_SECONDS + 1), (None, "x" * 65, 3)],
)
def test_bad_cuts_are_refused(connection_id: str | None, tag: str | None, seconds: float) -> None:
    with pytest.raises(ValueError):
        Tunnels().cut(0.0, connection_id=connection_id, tag=tag, seconds=seconds)


def test_match_of_reads_a_verified_key_and_the_tag() -> None:
    signer = KeySigner([SECRET])
    key = signer.sign(ConnectionKey(owner="fe-a1", secondary="fe-b1", connection_id="connAbc9", epoch=1))
    assert match_of(RouteRequest.from_target(f"/?resume={key}&devtag=t1"), signer) == Match(
        connection_id="connAbc9", tag="t1"
    )
    assert match_of(RouteRequest.from_target(f"/comet/{key}/recv"), signer).connection_id == "connAbc9"
    forged = KeySigner(["another-secret-0123456789"]).sign(
        ConnectionKey(owner="fe-a1", secondary=None, connection_id="connAbc9", epoch=1)
    )
    assert match_of(RouteRequest.from_target(f"/?resume={forged}"), signer) == Match()
