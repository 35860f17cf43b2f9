"""``python -m router``: run one Continuity router (console script ``continuity-router``)."""

from __future__ import annotations

import argparse
import signal
import sys

import structlog
import trio

import gossip
from kernel.cli import add_node_options, node_overrides, run_daemon
from kernel.logs import configure
from kernel.membership import ROLE_ROUTER
from router import admin_cli
from router.cluster import ClusterMap
from router.config import ConfigError, RouterConfig
from router.metrics import RouterMetrics
from router.server import Router, serve

log = structlog.get_logger("continuity.router")

_PROFILES = {
    "local": gossip.GossipConfig.local,
    "lan": gossip.GossipConfig.lan,
    "wan": gossip.GossipConfig.wan,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="continuity-router",
        description="Continuity router: routes WebSocket and Comet clients to the frontend that owns "
        "their connection, reading the cluster map from gossip.",
    )
    add_node_options(p, role="router", config_module="router/config.py",
                     dev_help="development mode: allow the built-in cluster secret and other unsafe "
                     "settings, enable the /dev/tunnel test hook")
    return p.parse_args(argv)


def keyring(config: RouterConfig) -> gossip.Keyring:
    """The gossip keyring: every cluster secret (as ``Keyring.from_secret`` derives it), primary first."""
    ring = gossip.Keyring.from_secret(config.cluster_secret)
    for old in config.old_cluster_secrets:
        primary = gossip.Keyring.from_secret(old).primary
        if primary is not None:
            ring.install(primary)
    return ring


async def run(config: RouterConfig) -> None:
    """Serve, join gossip, and on SIGTERM/SIGINT leave gossip, stop accepting and return."""
    metrics = RouterMetrics()
    cluster = ClusterMap(metrics=metrics)
    router = Router(config, cluster, metrics=metrics)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve, router)
            client_addr = f"{config.advertise_host or config.host}:{port}"
            metadata = gossip.Metadata(role=ROLE_ROUTER, zone=config.zone, addresses={"client": client_addr},
                                       state=gossip.ServingState.ACTIVE)
            async with gossip.open_member(
                _PROFILES[config.gossip_profile](), bind=config.gossip_address, seeds=config.seed_addresses,
                name=config.node_id, metadata=metadata, keyring=keyring(config),
            ) as member:
                nursery.start_soon(cluster.follow, member)
                log.info("router.joined", node_id=config.node_id, gossip=member.address, seeds=config.seeds)
                async for signum in signals:
                    log.info("router.stopping", signal=signal.Signals(signum).name)
                    break
                await member.leave()
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["admin"]:  # python -m router admin ...: the admin CLI
        return admin_cli.main(argv[1:])
    args = parse_args(argv)
    try:
        config = RouterConfig.load(args.config, **node_overrides(args))
        config.tls_context()  # a certificate that does not load stops us here
    except (ConfigError, OSError) as exc:
        print(f"continuity-router: {exc}", file=sys.stderr)
        return 2
    configure(args.log_level, node_id=config.node_id)
    status = run_daemon("continuity-router", run, config,
                        binds=f"{config.host}:{config.port}, gossip {config.gossip_bind}")
    log.info("router.stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
