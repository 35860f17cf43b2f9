"""Token revocation records (frontend.revocation): parsing, matching, merging, bounds. Pure."""

import pytest

from frontend.auth import FULL_CAPABILITY, Identity
from frontend.revocation import (
    MAX_TARGETS,
    REAUTH_MARGIN_MS,
    RETENTION_MS,
    Revocation,
    RevocationError,
    RevocationList,
    parse_request,
)
from frontend.tokens import MAX_TTL_MS
from kernel.errors import ErrorCode

NOW = 10_000_000


def token(client_id=None, issued=NOW - 1000, key="app.k", rkey=None) -> Identity:
    return Identity(key, client_id, FULL_CAPABILITY, NOW + 60_000, issued, rkey)


def test_retention_covers_the_longest_native_token():
    assert RETENTION_MS >= MAX_TTL_MS


def test_a_request_gives_one_result_per_target_in_order():
    body = {"targets": ["clientId:alice", "invalidType:abc", "revocationKey:r1", "clientId:"]}
    records, results = parse_request(NOW, "app.k", body)
    assert [r.target for r in records] == ["clientId:alice", "revocationKey:r1"]
    assert [r["target"] for r in results] == body["targets"]
    assert results[0] == {"target": "clientId:alice", "issuedBefore": NOW, "appliesAt": NOW}
    assert results[1]["error"]["statusCode"] == 400 and results[1]["error"]["code"] == 40000
    assert "error" in results[3] and "error" not in results[2]


def test_issued_before_and_the_reauth_margin():
    records, results = parse_request(
        NOW, "app.k", {"targets": ["clientId:a"], "issuedBefore": NOW - 5000, "allowReauthMargin": True}
    )
    assert results[0]["issuedBefore"] == NOW - 5000 and results[0]["appliesAt"] == NOW + REAUTH_MARGIN_MS
    assert records[0].applies_at_ms == NOW + REAUTH_MARGIN_MS


@pytest.mark.parametrize(
    "body, code",
    [
        (None, ErrorCode.INVALID_BODY),
        ([], ErrorCode.INVALID_BODY),
        ({"targets": []}, ErrorCode.INVALID_BODY),
        ({"targets": "clientId:a"}, ErrorCode.INVALID_BODY),
        ({"targets": [1]}, ErrorCode.INVALID_BODY),
        ({"targets": ["clientId:a"] * (MAX_TARGETS + 1)}, ErrorCode.INVALID_BODY),
        ({"targets": ["clientId:a"], "issuedBefore": NOW + 1}, ErrorCode.INVALID_PARAMETER),
        ({"targets": ["clientId:a"], "issuedBefore": "yesterday"}, ErrorCode.INVALID_PARAMETER),
        ({"targets": ["clientId:a"], "allowReauthMargin": "perhaps"}, ErrorCode.INVALID_PARAMETER),
    ],
)
def test_malformed_requests_are_refused_whole(body, code):
    with pytest.raises(RevocationError) as exc:
        parse_request(NOW, "app.k", body)
    assert exc.value.code == code


def test_matching_by_client_id_and_revocation_key_before_issued_before():
    by_client = Revocation("app.k", "clientId", "alice", NOW, NOW)
    assert by_client.matches(token("alice"))
    assert not by_client.matches(token("alice", issued=NOW))  # issued at or after: a new token
    assert not by_client.matches(token("bob"))
    assert not by_client.matches(token("alice", key="app.other"))
    assert not by_client.matches(Identity("app.k", "alice", FULL_CAPABILITY))  # key auth: no token
    by_rkey = Revocation("app.k", "revocationKey", "r1", NOW, NOW)
    assert by_rkey.matches(token("anyone", rkey="r1")) and not by_rkey.matches(token("alice"))


def test_the_list_refuses_only_once_a_record_applies():
    rl = RevocationList()
    later = Revocation("app.k", "clientId", "alice", NOW, NOW + REAUTH_MARGIN_MS)
    assert rl.add(NOW, later)
    assert rl.revoked(NOW, token("alice")) is None
    assert rl.next_due() == NOW + REAUTH_MARGIN_MS and rl.due(NOW) == []
    assert rl.due(NOW + REAUTH_MARGIN_MS) == [later]
    assert rl.revoked(NOW + REAUTH_MARGIN_MS, token("alice")) == later
    assert rl.revoked(NOW + REAUTH_MARGIN_MS, token("bob")) is None


def test_merging_is_idempotent_and_drops_dominated_records():
    rl = RevocationList()
    old = Revocation("app.k", "clientId", "alice", NOW - 10, NOW - 10)
    new = Revocation("app.k", "clientId", "alice", NOW, NOW)
    assert rl.add(NOW, old) and rl.add(NOW, new)
    assert not rl.add(NOW, old) and not rl.add(NOW, new)  # known or dominated: no change
    assert list(rl) == [new] and len(rl) == 1
    margin = Revocation("app.k", "clientId", "alice", NOW + 5, NOW + REAUTH_MARGIN_MS)
    assert rl.add(NOW, margin) and len(rl) == 2  # neither dominates the other: both kept
    assert rl.revoked(NOW, token("alice", issued=NOW + 1)) is None  # the margin's not in force yet
    assert rl.revoked(NOW, token("alice", issued=NOW - 1)) == new


def test_records_are_bounded_and_pruned_after_retention():
    rl = RevocationList(max_records=2)
    for i in range(3):
        rl.add(NOW, Revocation("app.k", "clientId", f"c{i}", NOW, NOW))
    assert len(rl) == 2 and not rl.room_for(1)
    assert not rl.add(NOW, Revocation("app.k", "clientId", "gone", NOW - RETENTION_MS, NOW))
    assert rl.prune(NOW + RETENTION_MS) == 2 and len(rl) == 0 and rl.room_for(2)


def test_wire_round_trip_and_validation():
    r = Revocation("app.k", "revocationKey", "r1", NOW, NOW + 1)
    assert Revocation.from_wire(r.to_wire()) == r
    for bad in (
        None,
        [],
        ["app.k", "nope", "v", 1, 2],
        ["app.k", "clientId", "v", "1", 2],
        ["", "clientId", "v", 1, 2],
    ):
        with pytest.raises(ValueError):
            Revocation.from_wire(bad)
