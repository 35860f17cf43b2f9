"""``continuity-admin`` (also ``python -m router admin``): operate a running cluster.

It talks to one node's admin surface (``--url``, a router's or a frontend's admin listener; the
client port when no admin listener is configured) with the bearer token from ``--token`` or
``$CONTINUITY_ADMIN_TOKEN``. That node's ``/cluster`` gives the members; per-frontend commands go
to each live frontend's advertised admin address (its client address when it has none).

    continuity-admin members
    continuity-admin channels                 home, replica and occupancy of every channel
    continuity-admin connections
    continuity-admin drain fe-a1              the node drains and exits, as on SIGTERM
    continuity-admin kick <connectionId>      ERROR 80017 to the client, its state discarded
    continuity-admin keys list|reload
    continuity-admin keys add app.key2 <secret> [--capability '{"chat:*": ["subscribe"]}']
    continuity-admin keys revoke app.key2

``--json`` prints JSON instead of a table. Exit status: 0 done, 1 a node refused or failed, 2 bad
usage or the first node unreachable.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

TIMEOUT_S = 5.0
TOKEN_ENV = "CONTINUITY_ADMIN_TOKEN"


class AdminError(Exception):
    """A node did not do what was asked; the message says which and why."""


class Client:
    def __init__(self, token: str | None, timeout_s: float = TIMEOUT_S) -> None:
        self.token = token
        self.timeout_s = timeout_s

    def call(self, address: str, method: str, path: str, body: Any = None) -> Any:
        """``method path`` on ``address`` (host:port); the decoded JSON answer, or AdminError."""
        conn = http.client.HTTPConnection(*_split(address), timeout=self.timeout_s)
        headers = {"accept": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        payload = None if body is None else json.dumps(body).encode()
        if payload is not None:
            headers["content-type"] = "application/json"
        try:
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as exc:
            raise AdminError(f"{address}: {exc}") from None
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            raise AdminError(f"{address}{path}: {resp.status} and a body that is not JSON") from None
        if resp.status >= 300:
            message = data.get("error", {}).get("message") if isinstance(data, dict) else None
            raise AdminError(f"{address}{path}: {resp.status} {resp.reason}: {message or raw[:200]!r}")
        return data


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def frontends(client: Client, url: str) -> list[tuple[str, str]]:
    """``(node_id, admin address)`` of every live frontend in the map of the node at ``url``."""
    address = urlsplit(url).netloc or url
    cluster = client.call(address, "GET", "/cluster")
    out = [(m["node_id"], m.get("admin_addr") or m["client_addr"]) for m in cluster.get("members", [])
           if m.get("role") == "frontend" and m.get("status") in ("alive", "suspect")]
    if not out and cluster.get("role") == "frontend":  # a standalone frontend
        out = [(cluster["node_id"], address)]
    return out


def run(args: argparse.Namespace, client: Client) -> tuple[list[dict[str, Any]], list[str]]:
    """Do the command; ``(rows, failures)``."""
    address = urlsplit(args.url).netloc or args.url
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    if args.command == "members":
        rows = client.call(address, "GET", "/cluster").get("members", [])
        return rows, failures

    def each(method: str, path: str, body: Any = None, only: str | None = None) -> list[tuple[str, Any]]:
        answers = []
        for node_id, addr in frontends(client, args.url):
            if only is not None and node_id != only:
                continue
            try:
                answers.append((node_id, client.call(addr, method, path, body)))
            except AdminError as exc:
                failures.append(str(exc))
        return answers

    if args.command == "connections":
        rows = [c for _, a in each("GET", "/admin/connections") for c in a["connections"]]
    elif args.command == "channels":
        rows = merge_channels([c for _, a in each("GET", "/admin/channels") for c in a["channels"]])
    elif args.command == "drain":
        answers = each("POST", "/admin/drain", {}, only=args.node)
        if not answers and not failures:
            failures.append(f"no live frontend named {args.node!r} in the map")
        rows = [{"node_id": n, "draining": True} for n, _ in answers]
    elif args.command == "kick":
        found = []
        for _, addr in frontends(client, args.url):
            try:
                found.append(client.call(addr, "POST", "/admin/kick", {"connection_id": args.connection_id}))
            except AdminError as exc:
                if " 404 " not in str(exc):
                    failures.append(str(exc))
        if not found and not failures:
            failures.append(f"no frontend holds connection {args.connection_id!r}")
        rows = found
    elif args.command == "keys":
        if args.keys_command == "list":
            rows = [{"node_id": n, "keys": " ".join(a["keys"])} for n, a in each("GET", "/admin/keys")]
        elif args.keys_command == "reload":
            reloaded = each("POST", "/admin/keys/reload", {})
            rows = [{"node_id": n, "keys": " ".join(a["keys"])} for n, a in reloaded]
        elif args.keys_command == "add":
            body = {"name": args.name, "secret": args.secret, "capability": json.loads(args.capability)}
            rows = [{"node_id": n, **a} for n, a in each("POST", "/admin/keys", body)]
        else:
            rows = [{"node_id": n, **a} for n, a in each("POST", "/admin/keys/revoke", {"name": args.name})]
    return rows, failures


def merge_channels(per_node: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per channel: its home and replica (from the home's row) and the total occupancy."""
    merged: dict[str, dict[str, Any]] = {}
    for row in per_node:
        entry = merged.setdefault(row["channel"], {"channel": row["channel"], "home": row["home"],
                                                   "replica": None, "occupancy": 0, "messages": None})
        entry["occupancy"] += row["occupancy"]
        if row["role"] == "home":
            entry.update(home=row["node_id"], replica=row["replica"], messages=row["messages"])
    return [merged[name] for name in sorted(merged)]


def table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="continuity-admin", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8080",
                   help="a node's admin surface (its admin listener, or its client port without one)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help=f"admin bearer token (default ${TOKEN_ENV})")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per request")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("members", help="the cluster map")
    sub.add_parser("channels", help="every channel: home, replica, occupancy")
    sub.add_parser("connections", help="every connection, per frontend")
    drain = sub.add_parser("drain", help="drain a frontend (it hands off and exits)")
    drain.add_argument("node")
    kick = sub.add_parser("kick", help="end a connection for good (ERROR 80017, no resume)")
    kick.add_argument("connection_id")
    keys = sub.add_parser("keys", help="API keys on every frontend")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("list")
    keys_sub.add_parser("reload", help="re-read [keys] from each frontend's config file (as SIGHUP)")
    add = keys_sub.add_parser("add", help="add a key at runtime (until the next reload or restart)")
    add.add_argument("name", help="appId.keyId")
    add.add_argument("secret")
    add.add_argument("--capability", default='{"*": ["*"]}', help="Ably capability JSON")
    revoke = keys_sub.add_parser("revoke", help="revoke a key at runtime (until the next reload or restart)")
    revoke.add_argument("name")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    client = Client(args.token, args.timeout)
    try:
        rows, failures = run(args, client)
    except AdminError as exc:
        print(f"continuity-admin: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"continuity-admin: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    for failure in failures:
        print(f"continuity-admin: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
