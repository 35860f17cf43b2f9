"""What the admin surface can do on a frontend (``/admin/...``, driven by ``continuity-admin``).

- ``connections``: every connection this node holds (live or detached).
- ``channels``: every channel this node homes, replicates or has subscribers for, with its home,
  its replica and the local occupancy (subscribed connections here).
- ``kick``: end one connection for good: its client gets ERROR 80017 (the connection goes to
  FAILED, nothing to resume) and its state, here and its copy elsewhere, is discarded.
- ``keys``: list, add, revoke, and reload from the config file (as SIGHUP does). Connections
  already authenticated are not touched, so a reload under load drops none; add and revoke are
  runtime changes that the next reload (or restart) replaces with the file's keys.
- ``drain``: SIGTERM to this process, whose handler drains (as k8s would).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import structlog

from frontend.auth import ApiKey, parse_capability
from frontend.config import ConfigError, FrontendConfig
from frontend.node import FrontendNode
from frontend.websocket import wall_ms
from kernel.errors import ErrorCode, ErrorInfo

log = structlog.get_logger("continuity.frontend")


class AdminRequestError(Exception):
    """A bad admin request; carries the error to answer."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.error = error


def connections(node: FrontendNode) -> list[dict[str, Any]]:
    now = wall_ms()
    out = []
    for cid, s in sorted(node.sessions.items()):
        out.append({
            "connection_id": cid,
            "node_id": node.node_id,
            "state": "live" if cid in node.outlets else "detached",
            "client_id": s.client_id,
            "key": s.identity.key_name,
            "channels": len(s.channels),
            "age_ms": max(0, now - s.created_ms),
        })
    return out


def channels(node: FrontendNode) -> list[dict[str, Any]]:
    names = set(node.channels.homes) | set(node.channels.replicas) | set(node.subscribers)
    out = []
    for name in sorted(names):
        home = node.channels.homes.get(name)
        out.append({
            "channel": name,
            "node_id": node.node_id,
            "home": node.node_id if home is not None else node.channels.home_of(name),
            "role": "home" if home is not None else (
                "replica" if name in node.channels.replicas else "stream"),
            "replica": home.replica if home is not None else None,
            "occupancy": len(node.subscribers.get(name, {})),
            "messages": len(home.log) if home is not None else None,
        })
    return out


def kick(node: FrontendNode, connection_id: str) -> bool:
    """End ``connection_id`` for good; False when this node does not hold it."""
    s = node.sessions.get(connection_id)
    if s is None:
        return False
    error = ErrorInfo.of(ErrorCode.CONNECTION_CLOSED, "connection closed by an operator")
    node.end_session(wall_ms(), s, error)
    node.wake()
    node.metrics.kicked.inc()
    log.info("connection.kicked", connection_id=connection_id)
    return True


def key_list(node: FrontendNode) -> list[str]:
    return node.auth.key_names()


def key_add(node: FrontendNode, body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not isinstance(
            body.get("secret"), str) or "." not in body["name"]:
        raise AdminRequestError(ErrorInfo.of(
            ErrorCode.BAD_REQUEST, 'expected {"name": "appId.keyId", "secret": "...", "capability": {...}}'))
    if not node.config.dev and len(body["secret"].encode()) < 16:
        raise AdminRequestError(ErrorInfo.of(ErrorCode.BAD_REQUEST, "a key secret is at least 16 bytes"))
    try:
        capability = parse_capability(body.get("capability", {"*": ["*"]}))
    except ValueError as exc:
        raise AdminRequestError(ErrorInfo.of(ErrorCode.BAD_REQUEST, f"capability: {exc}")) from None
    node.auth.add_key(ApiKey(name=body["name"], secret=body["secret"], capability=capability))
    log.info("keys.added", key=body["name"])
    return str(body["name"])


def key_revoke(node: FrontendNode, name: str) -> bool:
    revoked = node.auth.revoke_key(name)
    log.info("keys.revoked", key=name, known=revoked)
    return revoked


def reload_keys(node: FrontendNode, config_path: str | Path | None) -> list[str]:
    """Re-read the config file's ``[keys]`` (with the same checks as at start) and adopt them."""
    if config_path is None:
        raise AdminRequestError(ErrorInfo.of(ErrorCode.BAD_REQUEST,
                                             "started without --config: nothing to reload"))
    try:
        fresh = FrontendConfig.load(config_path, dev=node.config.dev or None)
    except (ConfigError, OSError) as exc:
        log.warning("keys.reload_failed", error=str(exc))
        raise AdminRequestError(ErrorInfo.of(ErrorCode.BAD_REQUEST, f"reload refused: {exc}")) from None
    node.auth.replace_keys(fresh.keys)
    node.metrics.key_reloads.inc()
    log.info("keys.reloaded", keys=sorted(fresh.keys))
    return sorted(fresh.keys)


def drain() -> None:
    """Drain this process as SIGTERM does (frontend/__main__.py)."""
    log.info("frontend.drain_requested")
    os.kill(os.getpid(), signal.SIGTERM)
