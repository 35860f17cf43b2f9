"""continuity-admin's pure parts: the channel merge and the table output."""

from __future__ import annotations

from router.admin_cli import merge_channels, parse_args, table


def test_merge_channels_takes_home_and_replica_from_the_home_and_sums_occupancy() -> None:
    rows = [
        {"channel": "c", "node_id": "fe-b1", "home": "fe-a1", "role": "stream", "replica": None,
         "occupancy": 2, "messages": None},
        {"channel": "c", "node_id": "fe-a1", "home": "fe-a1", "role": "home", "replica": "fe-b1",
         "occupancy": 1, "messages": 7},
        {"channel": "d", "node_id": "fe-b1", "home": "fe-b1", "role": "replica", "replica": None,
         "occupancy": 0, "messages": None},
    ]
    assert merge_channels(rows) == [
        {"channel": "c", "home": "fe-a1", "replica": "fe-b1", "occupancy": 3, "messages": 7},
        {"channel": "d", "home": "fe-b1", "replica": None, "occupancy": 0, "messages": None},
    ]


def test_table() -> None:
    assert table([]) == "(none)"
    assert table([{"node": "fe-a1", "keys": 2}, {"node": "fe-b10", "keys": None}]).splitlines() == [
        "node    keys", "fe-a1   2", "fe-b10",
    ]


def test_keys_add_arguments() -> None:
    args = parse_args(["--json", "keys", "add", "app.k", "s3cret", "--capability", '{"a": ["subscribe"]}'])
    assert (args.command, args.keys_command, args.name, args.secret, args.json) == (
        "keys", "add", "app.k", "s3cret", True)
