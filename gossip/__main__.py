"""Operator CLI: run one standalone member and print membership changes as they happen.

    python -m gossip --bind 127.0.0.1:7946 --seed 127.0.0.1:7947 --zone a [--secret S] [--profile local]

stdout gets one line when listening (``listening NAME HOST:PORT``) and one per change
(``KIND NAME HOST:PORT inc=N zone=Z role=R state=S load=L``); logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import structlog
import trio

from .config import GossipConfig
from .member import open_member
from .wire import Address, Metadata

PROFILES = {"lan": GossipConfig.lan, "local": GossipConfig.local, "wan": GossipConfig.wan}


def parse_address(text: str) -> Address:
    """Return ``(host, port)`` from ``host:port``; raise `argparse.ArgumentTypeError` otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected host:port, got {text!r}")
    return (host, int(port))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gossip",
        description="Run a standalone gossip member and print membership changes as they happen.",
    )
    p.add_argument("--bind", type=parse_address, default=("127.0.0.1", 7946), help="UDP+TCP host:port")
    p.add_argument("--seed", type=parse_address, action="append", default=[], help="seed host:port (repeat)")
    p.add_argument("--name", default=None, help="member name (default host:port)")
    p.add_argument("--zone", default="", help="zone advertised in metadata")
    p.add_argument("--role", default="cli", help="role advertised in metadata")
    p.add_argument(
        "--secret", default=os.environ.get("GOSSIP_SECRET"), help="cluster secret (default $GOSSIP_SECRET)"
    )
    p.add_argument("--profile", choices=sorted(PROFILES), default="lan", help="timing profile")
    p.add_argument("--log-level", default="warning", help="stderr log level (default warning)")
    return p


async def run(args: argparse.Namespace) -> None:
    config = PROFILES[args.profile]()
    metadata = Metadata(role=args.role, zone=args.zone)
    async with open_member(
        config, bind=args.bind, seeds=args.seed, name=args.name, metadata=metadata, secret=args.secret
    ) as member:
        events = member.events()
        host, port = member.address
        print(f"listening {member.name} {host}:{port}", flush=True)
        async for event in events:
            m = event.member
            md = m.metadata
            print(
                f"{event.kind.value} {m.name} {m.address[0]}:{m.address[1]} inc={m.incarnation} "
                f"zone={md.zone} role={md.role} state={md.state.value} load={md.load:g}",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    level = logging.getLevelNamesMapping().get(args.log_level.upper(), logging.WARNING)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    try:
        trio.run(run, args)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
