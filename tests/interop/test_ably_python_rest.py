"""ably-python ``AblyRest`` against a real cluster through the router.

Two trio-SDK subscribers, each on its own frontend, attach before ably-python publishes over
REST (msgpack and JSON, singles and arrays, a client-supplied id published twice): both get
every message once, in serial order, and the duplicate is answered with the first serial and
never delivered. History pages (limit 4) cover everything once, newest first. A token from
``auth_callback`` -> ``create_token_request()`` publishes as its clientId and is refused (40160)
outside its capability; a key-authenticated ``request_token`` returns TokenDetails.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import continuity
from tests.interop._harness import python_script
from tests.support.cluster import run_cluster
from tests.support.procs import API_KEY
from tests.support.streams import wait_until

pytestmark = pytest.mark.interop

CHANNEL = "rest:python"


async def subscribe(
    url: str,
    got: list[tuple[str | None, str | None]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with continuity.connect(url, key=API_KEY) as conn:
        ch = conn.channel(CHANNEL)
        async with ch.subscribe() as sub:
            task_status.started()
            async for msg in sub:
                got.append((msg.name, msg.serial))


async def test_ably_python_rest_publish_history_and_tokens(tmp_path: Path) -> None:
    subs: list[list[tuple[str | None, str | None]]] = [[], []]
    with trio.fail_after(90):
        async with run_cluster(tmp_path / "cluster") as cluster, trio.open_nursery() as nursery:
            fronts = cluster.frontends
            for got, fe in zip(subs, (fronts[0], fronts[3]), strict=True):
                await nursery.start(
                    lambda task_status, g=got, f=fe: subscribe(f.url, g, task_status=task_status)
                )
            port = int(cluster.router_url().rsplit(":", 1)[1])
            config = {"port": port, "key": API_KEY, "channel": CHANNEL}
            async with python_script(tmp_path, "ably_rest.py", config) as script:
                done = await script.expect("done")
            expected = [f"n{i}" for i in range(done["n"] - 1)] + [f"n{done['n'] - 1}", "as-py-user"]
            with trio.fail_after(15):
                await wait_until(lambda: all(len(g) >= len(expected) for g in subs))
            nursery.cancel_scope.cancel()
    for got in subs:
        assert [name for name, _ in got] == expected, got
        seqs = [int(str(s).rsplit(":", 1)[1]) for _, s in got]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    first, again = done["dup"]
    assert first == again and len(first) == 1
    assert [len(r) for r in done["results"]] == [1, 1, 1, 3, 1, 1, 1, 3]
    names = [name for page in done["pages"] for name in page]
    assert names == list(reversed(expected[:-1])), done["pages"]
    assert all(len(p) == 4 for p in done["pages"][:-1])
    assert done["token_client"] == "py-user" and len(done["token_serials"]) == 1
    assert done["refused"] == {"code": 40160, "status": 401}
    assert done["direct"] == {"client_id": "py-direct", "has_token": True}
