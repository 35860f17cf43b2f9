"""Browser tests: skip all of them, loudly, when chromium or playwright is absent; the cluster fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.browser.harness import unavailable
from tests.support.cluster import LocalCluster, run_cluster
from tests.support.procs import API_KEY

HERE = Path(__file__).resolve().parent

# Routers in dev mode (the tunnel hook) with a demo key the frontends also hold (token auth).
DEMO_ROUTERS = {"dev": True, "demo_key": API_KEY}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = unavailable()
    mine = [item for item in items if Path(str(item.fspath)).resolve().is_relative_to(HERE)]
    for item in mine:
        item.add_marker(pytest.mark.browser)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    """Four frontends in zones a and b, routers rt1 (a) and rt2 (b) in dev mode with a demo key."""
    async with run_cluster(
        tmp_path / "cluster", routers=(("rt1", "a"), ("rt2", "b")), router_overrides=DEMO_ROUTERS
    ) as c:
        yield c


def http_base(cluster: LocalCluster, i: int = 0) -> str:
    router = cluster.routers[i]
    return f"http://{router.host}:{router.port}"
