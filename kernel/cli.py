"""The command line both daemons share: the same node and cluster options, and one clear line
(not a traceback) when a port is already in use."""

from __future__ import annotations

import argparse
import errno
import gc
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from kernel.config import GOSSIP_PROFILES

T = TypeVar("T")


def add_node_options(parser: argparse.ArgumentParser, *, role: str, config_module: str,
                     dev_help: str) -> None:
    """The options every daemon takes; each overrides the config key of the same name."""
    parser.add_argument("--config", metavar="FILE",
                        help=f"TOML config file (every key: deploy/{role}.example.toml, {config_module})")
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port; 0 picks a free one (default 8080)")
    parser.add_argument("--node-id", help=f"this {role}'s id in the cluster")
    parser.add_argument("--zone", help=f"this {role}'s availability zone")
    parser.add_argument("--gossip-bind", metavar="HOST:PORT",
                        help="gossip bind address, advertised to the cluster (port 0 picks one)")
    parser.add_argument("--seed", dest="seeds", action="append", metavar="HOST:PORT",
                        help="gossip seed; repeat for several (replaces the config's seeds)")
    parser.add_argument("--gossip-profile", choices=list(GOSSIP_PROFILES),
                        help="gossip timing profile (default lan)")
    parser.add_argument("--dev", action="store_true", default=None, help=dev_help)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def node_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config overrides given on the command line (None: not given)."""
    return {
        "host": args.host, "port": args.port, "node_id": args.node_id, "zone": args.zone,
        "gossip_bind": args.gossip_bind, "seeds": args.seeds, "gossip_profile": args.gossip_profile,
        "dev": args.dev,
    }


def _address_in_use(exc: BaseException) -> OSError | None:
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _address_in_use(inner)
            if found is not None:
                return found
    if exc.__cause__ is not None:
        return _address_in_use(exc.__cause__)
    return None


# The cyclic collector's thresholds for a daemon (CPython's default is (700, 10, 10)). A frontend
# holds thousands of connections (hundreds of tracked objects each: trio tasks, cancel scopes, wsproto
# state) and a retained log; with the defaults the young generations fill on every few publishes and a
# full collection, which walks every tracked object, came every ~25% of growth. bench/many_channels.py
# at 1,250 x 4 (5,000 connections), two alternating pairs on the shared 2-core machine: 15 full
# collections of ~0.4 s each and 7.5 s of collector time in the process's 20-22 CPU-s; with these, none,
# 1.3-1.5 s, 14.2-14.4 CPU-s, and 103-108 against 120-144 us of CPU per delivery (bench/README.md).
# Reverted once (20a2008) for test_zone_loss's refuses-at-once test, whose failures were its own
# timing flake (fixed in f5450f0): with these it passed 8 of 8 alone and 4 of 4 with its file.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    """Collect the young generation every 50,000 net allocations, not 700 (see GC_THRESHOLDS)."""
    gc.set_threshold(*GC_THRESHOLDS)


def run_daemon(prog: str, main: Callable[[T], Awaitable[None]], config: T, *, binds: str) -> int:
    """``trio.run(main, config)``; an address already in use is one line on stderr (naming
    ``binds``, what the daemon listens on) and exit status 1."""
    tune_gc()
    try:
        trio.run(main, config)
    except BaseException as exc:
        in_use = _address_in_use(exc)
        if in_use is None:
            raise
        print(f"{prog}: cannot listen on {binds}: {(in_use.strerror or str(in_use)).lower()} (another "
              f"process holds the port: stop it or choose another port)", file=sys.stderr)
        return 1
    return 0
