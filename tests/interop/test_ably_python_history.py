"""ably-python 3.x ``channel.history()`` against a real frontend: its REST client (the realtime
client publishes; its own history() cannot reach a non-default port, see py/ably_history.py), JSON
and msgpack, a memory-only and a persisted channel, paged backwards and read forwards."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.interop._harness import make_jwt, python_script, run_frontend

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("binary", [pytest.param(True, id="msgpack"), pytest.param(False, id="json")])
@pytest.mark.parametrize("channel", ["mem:py", "p:py"])
async def test_ably_python_history(tmp_path: Path, binary: bool, channel: str) -> None:
    store = {"history_store": f"sqlite:{tmp_path / 'h.sqlite3'}", "channels": {"p:*": {"persist": "1h"}}}
    async with run_frontend(tmp_path, **store) as fe:
        config = {
            "port": fe.port,
            "token": make_jwt(client_id=None, capability={"*": ["*"]}),
            "binary": binary,
            "channel": channel,
            "count": 12,
            "limit": 5,
        }
        with trio.fail_after(60):
            async with python_script(tmp_path, "ably_history.py", config) as script:
                result = await script.expect("result")
    assert len(result["backwards"]) == 12 and result["pages"] == 3
    assert result["forwards"] == list(reversed(result["backwards"]))
    assert [d["n"] if isinstance(d, dict) else d for d in result["data"]] == list(range(11, -1, -1))
    epoch = result["forwards"][0].rpartition(":")[0]
    assert result["forwards"] == [f"{epoch}:{n}" for n in range(1, 13)]
