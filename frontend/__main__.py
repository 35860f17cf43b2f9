"""``python -m frontend``: run one Continuity frontend."""

from __future__ import annotations

import argparse
import random
import signal
import sys
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import structlog
import trio

from frontend import admin_ops
from frontend.cluster import Cluster
from frontend.config import ConfigError, FrontendConfig
from frontend.http import serve
from frontend.node import FrontendNode
from kernel.cli import add_node_options, node_overrides, run_daemon
from kernel.logs import configure

log = structlog.get_logger("continuity.frontend")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="continuity-frontend",
        description="Continuity frontend: serves the Ably realtime protocol over WebSocket on one port. "
        "With --gossip-bind (or gossip_bind in the config) it joins a cluster.",
    )
    add_node_options(
        p,
        role="frontend",
        config_module="frontend/config.py",
        dev_help="development mode: accept any key or token with full capability, and "
        "allow the built-in cluster secret and other unsafe settings",
    )
    p.add_argument(
        "--history-store",
        metavar="URL",
        help='where persisted channels keep their history: "sqlite:<path>" (a standalone frontend) or '
        'a "postgresql://..." URL (overrides history_store)',
    )
    p.add_argument(
        "--persist",
        action="append",
        default=[],
        metavar="PATTERN=DURATION",
        help='persist channels matching PATTERN for DURATION, e.g. "chat:*=24h" (repeatable; '
        'replaces the config\'s [channels."<pattern>"] rules)',
    )
    return p.parse_args(argv)


def persist_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--history-store`` and ``--persist`` as config overrides; ConfigError for a bad --persist."""
    rules: dict[str, dict[str, str]] = {}
    for item in args.persist:
        pattern, sep, duration = item.rpartition("=")
        if not sep or not pattern or not duration:
            raise ConfigError(f"--persist {item!r} must look like PATTERN=DURATION, e.g. chat:*=24h")
        rules[pattern] = {"persist": duration}
    return {"history_store": args.history_store, "channels": rules or None}


async def run(config: FrontendConfig, config_path: str | None = None) -> None:
    node = FrontendNode(config, rng=random.SystemRandom())
    cluster = Cluster(node) if config.clustered else None
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            await nursery.start(partial(serve, node, cluster, config_path=config_path))
            async for signum in signals:
                if signum == signal.SIGHUP:
                    try:  # API keys from the config file again; no connection is touched
                        admin_ops.reload_keys(node, config_path)
                    except admin_ops.AdminRequestError as exc:
                        log.warning("frontend.sighup_ignored", reason=str(exc))
                    continue
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
    try:
        config = FrontendConfig.load(args.config, **node_overrides(args), **persist_overrides(args))
        config.tls_context()  # a certificate that does not load stops us here
    except (ConfigError, OSError) as exc:
        print(f"continuity-frontend: {exc}", file=sys.stderr)
        return 2
    configure(args.log_level, node_id=config.node_id)
    if config.dev:
        log.warning(
            "frontend.dev_mode",
            warning="DEVELOPMENT MODE: every key and token is accepted with full "
            "capability. Never expose this to a network.",
        )
    binds = f"{config.host}:{config.port}"
    if config.clustered:
        binds += f", gossip {config.gossip_bind}, peer {config.peer_host}:{config.peer_port}"
    status = run_daemon("continuity-frontend", partial(run, config_path=args.config), config, binds=binds)
    log.info("frontend.stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
