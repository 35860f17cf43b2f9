"""Pytest fixtures for integration tests: a frontend process and a tunnel in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.support.procs import FrontendProcess, run_frontend
from tests.support.tunnel import Tunnel

# Short timings so that resume paths run in seconds.
FAST_CONFIG = {"max_idle_interval_ms": 2_000, "connection_state_ttl_ms": 30_000}


@pytest.fixture
async def frontend(tmp_path: Path) -> AsyncIterator[FrontendProcess]:
    """A frontend with FAST_CONFIG, stopped after the test."""
    async with run_frontend(tmp_path / "fe", **FAST_CONFIG) as fe:
        yield fe


async def start_tunnel(nursery: trio.Nursery, port: int) -> Tunnel:
    tunnel = Tunnel("127.0.0.1", port)
    await nursery.start(tunnel.serve)
    return tunnel


@pytest.fixture
async def tunnel(frontend: FrontendProcess, nursery: trio.Nursery) -> Tunnel:
    """A tunnel in front of ``frontend``."""
    return await start_tunnel(nursery, frontend.port)
