"""The router stamps every request it forwards with who forwarded it and when (kernel.http.FORWARDED),
once per client request, and drops a client's own stamp; a frontend reads it back."""

from __future__ import annotations

import h11

from kernel import http
from router import proxy


def test_the_stamp_names_the_router_and_its_time_and_replaces_a_clients_own() -> None:
    req = h11.Request(
        method=b"GET",
        target=b"/comet/k/recv",
        headers=[(b"host", b"x"), (b"x-continuity-forwarded", b"rt9 1")],
    )
    up = proxy.upstream_request(req, b"", "10.0.0.1", "rt1", now_us=123_456)
    stamps = [v for k, v in up.headers if k == http.FORWARDED]
    assert stamps == [b"rt1 123456"]
    assert http.forwarded(up.headers) == ("rt1", 123_456)
    later = proxy.upstream_request(req, b"", "10.0.0.1", "rt1")
    parsed = http.forwarded(later.headers)
    assert parsed is not None and parsed[0] == "rt1" and parsed[1] > 123_456  # the router's wall clock


def test_a_malformed_stamp_reads_as_none() -> None:
    for raw in (b"", b"rt1", b"rt1 x", b" 12", b"rt1 " + b"9" * 21):
        assert http.forwarded([(http.FORWARDED, raw)]) is None
    assert http.forwarded([]) is None
    assert http.forwarded([(http.FORWARDED, b"rt 1 2")]) == ("rt 1", 2)
