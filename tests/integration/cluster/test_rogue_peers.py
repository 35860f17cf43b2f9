"""Rogue traffic at a clustered frontend's peer and gossip ports is dropped and counted (issue 6).

A process that does not hold the cluster secret connects to the peer-link port with garbage, a
hello signed with another secret, and an oversized frame, and sends forged gossip datagrams. Each is
refused and counted; the frontend keeps serving its clients.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import trio

import continuity
from frontend import peerwire as W
from tests.support.cluster import Node, run_cluster
from tests.support.procs import API_KEY, http_get, parse_metrics
from tests.support.streams import wait_until_async

pytestmark = pytest.mark.integration


async def _metrics(node: Node) -> dict[str, float]:
    status, body = await http_get(node.host, node.port, "/metrics")
    assert status == 200
    return parse_metrics(body.decode())


async def _send_and_wait_for_close(host: str, port: int, data: bytes) -> None:
    stream = await trio.open_tcp_stream(host, port)
    try:
        await stream.send_all(data)
        with trio.fail_after(5):
            while await stream.receive_some(4096):
                pass  # the frontend answers nothing and closes the link
    except trio.BrokenResourceError:
        pass
    finally:
        await stream.aclose()


async def test_rogue_peer_links_and_gossip_datagrams_are_dropped_and_counted(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with run_cluster(tmp_path, frontends=[("fe-a1", "a")], routers=[]) as cluster:
            fe = cluster.nodes["fe-a1"]
            me = next(m for m in (await fe.get_json("/cluster"))["members"] if m["node_id"] == "fe-a1")
            peer_host, _, peer_port = me["peer_addr"].rpartition(":")
            forged = W.encode_hello("not-the-cluster-secret-at-all", "fe-b9", 0, os.urandom(12), 9999)
            for data in (
                b"\x00\x00\x00\x05garbage",
                forged,
                (2**31).to_bytes(4, "big") + b"x" * 16,
            ):
                await _send_and_wait_for_close(peer_host, int(peer_port), data)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                for datagram in (b"\x01" * 40, os.urandom(600), b"x" * 3000):
                    udp.sendto(datagram, (fe.host, fe.gossip_port))

            async def counted() -> bool:
                m = await _metrics(fe)
                dropped = sum(v for k, v in m.items() if k.startswith("continuity_gossip_dropped"))
                return m.get("continuity_peer_links_rejected_total", 0) >= 3 and dropped >= 3

            with trio.fail_after(10):
                await wait_until_async(counted)
            # The frontend still serves clients.
            async with continuity.connect(fe.url, key=API_KEY) as conn:
                ch = conn.channel("still-here")
                async with ch.subscribe() as sub:
                    [serial] = await ch.publish("n", "ok")
                    msg = await sub.receive()
                    assert msg.serial == serial and msg.data == "ok"
