"""/metrics families: process_*, the latency histograms, no _created series; node_id on every JSON
log line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

import continuity
from router.cluster import ClusterMap
from router.config import RouterConfig
from router.server import Router
from tests.support.procs import API_KEY, run_frontend
from tests.support.streams import FAST_BACKOFF, wait_until

pytestmark = pytest.mark.integration

PROCESS = ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
           "process_start_time_seconds")
HISTOGRAMS = ("continuity_publish_ack_seconds", "continuity_publish_deliver_seconds",
              "continuity_resume_catch_up_seconds")


def _families(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


async def test_frontend_metrics_and_logs(tmp_path: Path) -> None:
    async with run_frontend(tmp_path) as fe:
        url = fe.url
        with trio.fail_after(30):
            async with continuity.connect(url, key=API_KEY, backoff=FAST_BACKOFF) as pub, \
                    continuity.connect(url, key=API_KEY, backoff=FAST_BACKOFF) as sub:
                got: list[object] = []
                channel = sub.channel("metrics")
                async with channel.subscribe() as messages, trio.open_nursery() as nursery:

                    async def record() -> None:
                        async for msg in messages:
                            got.append(msg.data)

                    nursery.start_soon(record)
                    await pub.channel("metrics").publish("n", 1)
                    await wait_until(lambda: len(got) == 1)
                    sub.drop_transport()  # it resumes; what it missed is replayed
                    await pub.channel("metrics").publish("n", 2)
                    await wait_until(lambda: len(got) == 2)
                    nursery.cancel_scope.cancel()
            status, body = await fe.get("/metrics")
            assert status == 200
            text = body.decode()
            assert "_created" not in text
            families = _families(text)
            for name in PROCESS:
                assert f"# TYPE {name} " in text, name
            for name in HISTOGRAMS:
                assert name in families, name
            samples = await fe.metrics()
            assert samples["continuity_publish_ack_seconds_count"] >= 2
            assert samples["continuity_publish_deliver_seconds_count"] >= 1
            assert samples["continuity_resume_catch_up_seconds_count"] >= 1
            assert samples['continuity_publish_ack_seconds_bucket{le="30.0"}'] >= 2
        lines = [json.loads(line) for line in fe.log_text().splitlines() if line.startswith("{")]
        assert lines and all(line.get("node_id") == "it1" for line in lines), \
            [line for line in lines if line.get("node_id") != "it1"][:3]


def test_router_metrics_have_process_and_no_created() -> None:
    router = Router(RouterConfig(cluster_secret="integration-cluster-secret-0123456789"), ClusterMap())
    router.metrics.requests.labels(kind="local").inc()
    text = router.metrics.render().decode()
    assert "_created" not in text and "continuity_router_requests_total" in text
    for name in PROCESS:
        assert f"# TYPE {name} " in text, name
    assert "continuity_router_forward_seconds" in _families(text)


def test_the_grafana_dashboard_reads_only_metrics_that_exist() -> None:
    import re

    from frontend.metrics import Metrics
    from router.metrics import RouterMetrics

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy" / "grafana" /
                            "continuity-dashboard.json").read_text())
    exported = set()
    for registry in (Metrics().registry, RouterMetrics().registry):
        for family in registry.collect():
            exported |= {sample.name for sample in family.samples} | {family.name}
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b((?:continuity|process)_[a-z_]+)", e)}
    assert len(exprs) >= 10 and used
    histograms = {f"{h}_bucket" for h in HISTOGRAMS}
    assert histograms <= used
    # A histogram that has observed nothing exports its _bucket samples all the same.
    missing = sorted(m for m in used - exported if not m.endswith(("_bucket", "_total")) or
                     m.removesuffix("_bucket").removesuffix("_total") not in exported)
    assert missing == [], missing
