"""Connection keys and capabilities on a live cluster (issue 6, security).

* truncated keys, keys whose owner was rewritten (cross-node), and keys signed with another
  cluster's secret get 80018 and a fresh connection;
* a key replayed after its connection was closed, and the pre-takeover key replayed after the
  client resumed on the new owner, get 80008 and a fresh connection;
* in every case the victim keeps its connection id and its stream;
* a key whose capability denies publish gets NACK 40160, and a denied subscribe is refused with
  a channel error 40160, while the allowed channel works.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import continuity
from continuity import ChannelFailedError, ConnectionState, PublishError
from kernel.keys import KeySigner
from kernel.protocol import Action
from tests.support.cluster import CLUSTER_SECRET, run_cluster
from tests.support.procs import API_KEY, run_frontend
from tests.support.raw import raw_connect
from tests.support.streams import wait_until_async

pytestmark = pytest.mark.integration


async def refused_with(url: str, key: str, code: int, victim_id: str | None, label: str = "") -> None:
    """A resume with ``key`` gets CONNECTED with error ``code`` and a connection that is not the victim's."""
    async with raw_connect(url, key=API_KEY, resume=key) as raw:
        connected = await raw.recv_action(Action.CONNECTED, Action.ERROR)
        assert connected.action is Action.CONNECTED, connected
        assert connected.error is not None and connected.error.code == code, (label, key, connected.error)
        assert connected.connection_id not in (None, victim_id)


def rewrite_owner(key: str, owner: str) -> str:
    _owner, secondary, conn_id, epoch, mac = key.split(".")
    return f"{owner}.{secondary}.{conn_id}.{epoch}.{mac}"


async def test_forged_truncated_cross_node_and_replayed_keys_never_attach(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with run_cluster(tmp_path, routers=[("rt1", "a")]) as cluster:
            url = cluster.router_url()
            async with continuity.connect(url, key=API_KEY, format="json") as victim:
                assert victim.key is not None and victim.id is not None
                ch = victim.channel("vault")
                async with ch.subscribe() as sub:
                    await ch.publish("m", 0)
                    assert (await sub.receive()).data == 0
                    owner = await cluster.owner_of(victim.id)
                    assert owner is not None
                    other = next(n.name for n in cluster.frontends if n.name != owner)
                    foreign = KeySigner(["another-cluster-secret-0123456789"]).sign(
                        KeySigner([CLUSTER_SECRET]).verify(victim.key)
                    )
                    assert foreign != victim.key
                    for label, forged in (
                        ("truncated", victim.key[:-6]),
                        ("truncated-to-id", ".".join(victim.key.split(".")[:3])),
                        ("owner-rewritten", rewrite_owner(victim.key, other)),
                        ("other-cluster-secret", foreign),
                    ):
                        # Through the router and straight at a frontend that is not the owner.
                        await refused_with(url, forged, 80018, victim.id, label)
                        await refused_with(cluster.nodes[other].url, forged, 80018, victim.id, label)
                    # The victim never noticed: same connection, same owner, stream intact.
                    assert victim.state is ConnectionState.CONNECTED and victim.transports_opened == 1
                    assert await cluster.owner_of(victim.id) == owner
                    await ch.publish("m", 1)
                    assert (await sub.receive()).data == 1

                # Kill the owner: the victim resumes on a new owner with a new key (a takeover).
                old_key, old_id = victim.key, victim.id
                await cluster.kill(owner)
                with trio.fail_after(30):
                    await wait_until_async(
                        lambda: _resumed_elsewhere(victim, old_key, cluster, owner)  # type: ignore[arg-type]
                    )
                assert victim.id == old_id and victim.key != old_key
                # The pre-takeover key, replayed, attaches to nothing.
                await refused_with(url, old_key, 80008, victim.id)
                assert victim.id == old_id and victim.state is ConnectionState.CONNECTED
                await ch.publish("m", 2)
                closed_key = victim.key
                assert closed_key is not None

            # After CLOSE, the last key is dead everywhere.
            await refused_with(url, closed_key, 80008, old_id)
            for fe in cluster.frontends:
                if fe.running:
                    await refused_with(fe.url, closed_key, 80008, old_id)


async def _resumed_elsewhere(victim: continuity.Connection, old_key: str, cluster: object, dead: str) -> bool:
    if victim.state is not ConnectionState.CONNECTED or victim.key == old_key or victim.id is None:
        return False
    owner = await cluster.owner_of(victim.id)  # type: ignore[attr-defined]
    return owner is not None and owner != dead


RO_KEY_NAME, RO_SECRET = "app.readonly", "readonly-secret-0123456789"


async def test_capability_denies_publish_with_nack_40160_and_refuses_a_denied_subscribe(
    tmp_path: Path,
) -> None:
    keys = {
        "app.key": {"secret": "integration-secret", "capability": {"*": ["*"]}},
        RO_KEY_NAME: {"secret": RO_SECRET, "capability": {"news": ["subscribe"]}},
    }
    with trio.fail_after(30):
        async with run_frontend(tmp_path / "fe", keys=keys) as fe:
            async with (
                continuity.connect(fe.url, key=f"{RO_KEY_NAME}:{RO_SECRET}") as reader,
                continuity.connect(fe.url, key=API_KEY) as writer,
            ):
                news = reader.channel("news")
                async with news.subscribe() as sub:
                    with pytest.raises(PublishError) as nack:
                        await news.publish("forged", "x")
                    assert nack.value.code == 40160
                    # The denied publish reached nobody; an allowed publisher's message does.
                    await writer.channel("news").publish("real", "y")
                    msg = await sub.receive()
                    assert (msg.name, msg.data) == ("real", "y")
                with pytest.raises(ChannelFailedError) as refused:
                    await reader.channel("secret").attach()
                assert refused.value.code == 40160
                assert reader.state is ConnectionState.CONNECTED
                assert await reader.ping() >= 0
            metrics = await fe.metrics()
            assert metrics.get('continuity_nacks_total{code="40160"}', 0) >= 1
