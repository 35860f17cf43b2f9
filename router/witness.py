"""The router as a witness of the zone quorum (``kernel/quorum.py``, docs/architecture.md "Zone quorum").

A router in a zone with no frontend is a *witness zone*'s vote. Frontends that have no other zone to
copy to ask it for a grant with ``POST /witness`` (a JSON body MAC'd with the cluster secret); it
answers ``{"granted", "holder", "lease_ms"}`` from its ``Witness`` core. Every router serves the
path; frontends ask only routers of witness zones. A refused or malformed request is answered 403
or 400, logged and counted. Holders that gossip reaped (gone from the map, or ``left``) are forgotten.
"""

from __future__ import annotations

import json
import time

import structlog

from kernel.quorum import DEFAULT_LEASE_MS, Witness, read_grant_request
from router.parts import RouterParts

log = structlog.get_logger("continuity.router")


def monotonic_ms() -> int:
    """The witness's clock: monotonic, and readable outside ``trio.run`` (a Router is built before it)."""
    return int(time.monotonic() * 1000)


class WitnessService:
    def __init__(self, router: RouterParts) -> None:
        self.router = router
        self.core = Witness(started_ms=monotonic_ms(), lease_ms=DEFAULT_LEASE_MS)

    def answer(self, body: bytes, mac: str, wall_ms: int) -> tuple[int, dict[str, object]]:
        """(status, JSON body) for one grant request."""
        req = read_grant_request(self.router.config.secrets, body, mac, wall_ms)
        if isinstance(req, str):
            self.router.metrics.witness_requests.labels(result="refused").inc()
            log.warning("witness.request_refused", reason=req)
            return (403 if req in ("bad mac", "stale request") else 400), {"error": req}
        view = self.router.cluster.view
        gone = [n for n in self.core.holders if (p := view.peers.get(n)) is None or p.status == "left"]
        if gone:
            log.info("witness.holders_forgotten", nodes=gone)
            self.core.forget(gone, view.alive, monotonic_ms())
        before = self.core.holder_zone()
        granted, holder, lost = self.core.ask(
            monotonic_ms(),
            req.node,
            req.zone,
            need=req.need,
            holding=req.holding,
            alone=req.alone,
            boot=req.boot,
            alive=view.alive,
        )
        if lost:
            log.error("witness.holder_restarted", node=req.node, zone=req.zone)
        result = "granted" if granted else ("released" if not req.need else "refused_other_zone")
        self.router.metrics.witness_requests.labels(result=result).inc()
        if holder != before:
            log.warning("witness.holder_changed", zone=holder, previous=before, node=req.node)
        if req.need and not granted:
            log.info("witness.grant_refused", node=req.node, zone=req.zone, holder=holder)
        answer: dict[str, object] = {
            "granted": granted, "holder": holder, "lost": lost, "lease_ms": self.core.lease_ms,
        }
        if lost:
            answer["lost_age_ms"] = self.core.lost_age_ms(monotonic_ms())
        return 200, answer


def encode(body: dict[str, object]) -> bytes:
    return json.dumps(body).encode()
