"""``python -m frontend``: run one Continuity frontend."""

from __future__ import annotations

import argparse
import random
import signal
import sys
from collections.abc import AsyncIterator

import structlog
import trio

from frontend.cluster import Cluster
from frontend.config import ConfigError, FrontendConfig
from frontend.http import serve
from frontend.node import FrontendNode
from kernel.logs import configure

log = structlog.get_logger("continuity.frontend")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="continuity-frontend",
        description="Continuity frontend: serves the Ably realtime protocol over WebSocket on one port.",
    )
    p.add_argument("--config", metavar="FILE", help="TOML config file (see frontend/config.py for every key)")
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port; 0 picks a free one (default 8080)")
    p.add_argument("--node-id", help="this node's id in the cluster")
    p.add_argument("--zone", help="this node's availability zone")
    p.add_argument(
        "--dev",
        action="store_true",
        default=None,
        help="development mode: accept any key or token with full capability",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p.parse_args(argv)


async def run(config: FrontendConfig) -> None:
    node = FrontendNode(config, rng=random.SystemRandom())
    cluster = Cluster(node) if config.clustered else None
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            await nursery.start(serve, node, cluster)
            async for signum in signals:
                log.info("frontend.stopping", signal=signal.Signals(signum).name)
                if cluster is not None:
                    # Drain: a second signal while draining stops at once.
                    async with trio.open_nursery() as drain:
                        drain.start_soon(_stop_on_signal, signals, drain.cancel_scope)
                        await cluster.drain()
                        drain.cancel_scope.cancel()
                nursery.cancel_scope.cancel()
                break


async def _stop_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    async for _ in signals:
        log.warning("frontend.drain_interrupted")
        scope.cancel()
        return


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(args.log_level)
    try:
        config = FrontendConfig.load(
            args.config, host=args.host, port=args.port, node_id=args.node_id, zone=args.zone, dev=args.dev
        )
    except (ConfigError, OSError) as exc:
        print(f"continuity-frontend: {exc}", file=sys.stderr)
        return 2
    if config.dev:
        log.warning(
            "frontend.dev_mode",
            warning="DEVELOPMENT MODE: every key and token is accepted with full "
            "capability. Never expose this to a network.",
        )
    trio.run(run, config)
    log.info("frontend.stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
