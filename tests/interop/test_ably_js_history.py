"""channel.history() with the real npm ``ably`` under Node, while publishing goes on.

``untilAttach: true`` (RTL10b) pages back from the attach point: the history pages and what the
subscription delivers after the attach are, together, every ACKed message once, in order (no
gap, no overlap). On a memory-only channel and on a persisted one (SQLite), over WebSocket and
Comet; and with rewind, where the rewound messages count as delivered, not as history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from tests.interop._harness import API_KEY, node_script, run_frontend

pytestmark = pytest.mark.interop

TRANSPORTS = {"web_socket": ["web_socket"], "comet": ["comet"]}


async def history_run(tmp: Path, port: int, **config: Any) -> dict[str, Any]:
    with trio.fail_after(60):
        async with node_script(tmp, "history.mjs", {"port": port, "key": API_KEY, **config}) as script:
            return await script.expect("result")


def check_no_gap_no_overlap(result: dict[str, Any]) -> None:
    acked, delivered = result["acked"], result["delivered"]
    history = list(reversed(result["history"]))
    assert history + delivered == acked, (len(history), len(delivered), len(acked))
    assert history and delivered  # the attach really was mid-stream
    assert result["logErrors"] == []


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@pytest.mark.parametrize("channel", ["mem:until", "p:until"])
async def test_until_attach_while_publishing(tmp_path: Path, transport: str, channel: str) -> None:
    config = {"history_store": f"sqlite:{tmp_path / 'h.sqlite3'}", "channels": {"p:*": {"persist": "1h"}}}
    async with run_frontend(tmp_path, **config) as fe:
        result = await history_run(
            tmp_path, fe.port, channel=channel, transports=TRANSPORTS[transport], before=25, after=25
        )
    check_no_gap_no_overlap(result)
    assert result["pages"] > 1  # limit 7: paged through Link headers
    assert result["history"][0] == result["attachSerial"]


async def test_until_attach_with_rewind(tmp_path: Path) -> None:
    async with run_frontend(tmp_path) as fe:
        result = await history_run(tmp_path, fe.port, channel="mem:rewind", params={"rewind": "5"})
    check_no_gap_no_overlap(result)
    assert len(result["delivered"]) >= 5
