"""Token revocation (``auth.revokeTokens``) and ``batchPresence`` with the real ably-js on a cluster.

One frontend is killed before the revocation and restarted after it: the revocation must reach
it when it comes back (the others send it their lists), so the revoked token is refused by every
frontend, while clients on the others were cut with 40141 at once: the one that cannot renew
fails, the one with an authCallback resumes the same connection with a new token.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import trio

from tests.interop._harness import node_script
from tests.support.cluster import run_cluster
from tests.support.procs import API_KEY
from tests.support.rest import rest_call
from tests.support.streams import wait_until_async

pytestmark = pytest.mark.interop


async def refusal_code(port: int, token: str) -> int | None:
    bearer = {"authorization": "Bearer " + base64.b64encode(token.encode()).decode()}
    status, body = await rest_call(port, "GET", "/channels/rev:x/messages", headers=bearer)
    return None if status == 200 else int(body["error"]["code"])


async def revoked_at(port: int, token: str) -> bool:
    return await refusal_code(port, token) == 40141


async def test_revoke_tokens_reaches_every_frontend_and_batch_presence(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with run_cluster(tmp_path / "cluster") as cluster:
            fronts = cluster.frontends
            away = fronts[2]
            await cluster.kill(away.name)
            await cluster.wait_converged(dead=[away.name])
            config = {
                "port": int(cluster.router_url().rsplit(":", 1)[1]),
                "ports": [fe.port for fe in fronts],
                "key": API_KEY,
            }
            async with node_script(tmp_path, "revoke.mjs", config) as script:
                presence = (await script.expect("presence"))["result"]
                revoked = (await script.expect("revoked"))["result"]
                states = await script.expect("states")
            token = states["aliceToken"]
            for fe in fronts:
                if fe is not away:
                    assert await refusal_code(fe.port, token) == 40141, fe.name
            await cluster.start(away.name)
            await cluster.wait_converged()
            # The restarted frontend learns the revocation from its peers once it is in their map.
            await wait_until_async(lambda: revoked_at(away.port, token))

    assert presence["successCount"] == 1 and presence["failureCount"] == 1, presence
    denied, allowed = presence["results"]
    assert denied["channel"] == "bp:denied" and denied["error"]["statusCode"] == 401, denied
    assert allowed["channel"] == "bp:allowed" and [m["clientId"] for m in allowed["presence"]] == ["carol"]

    assert revoked["successCount"] == 2 and revoked["failureCount"] == 1, revoked
    assert [r["target"] for r in revoked["results"]] == ["clientId:alice", "clientId:bob", "invalidType:abc"]
    assert revoked["results"][2]["error"]["statusCode"] == 400
    assert all(isinstance(r["appliesAt"], int) for r in revoked["results"][:2])

    logs = states["logs"]
    alice_disconnect = next(c for c in logs["alice"] if c["state"] == "disconnected")
    assert alice_disconnect["code"] == 40141, logs["alice"]
    assert logs["alice"][-1]["state"] == "failed", logs["alice"]
    assert any(c["state"] == "disconnected" and c["code"] == 40141 for c in logs["bob"]), logs["bob"]
    # bob renewed its token and resumed: the same connection, never a new one.
    assert states["bobIdAfter"] == states["bobId"] and states["bobTokens"] >= 2, states
    # carol's token was not revoked: never cut.
    assert all(c["state"] in ("connecting", "connected") for c in logs["carol"]), logs["carol"]
