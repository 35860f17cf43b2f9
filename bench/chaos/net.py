"""The chaos run's network: zone a and one zone-b frontend in network namespaces, so both can be cut.

Layout (``ChaosNet``): namespace ``zone`` holds fe-a1 and fe-a2 (they talk over its loopback), namespace
``lone`` holds fe-b2; fe-b1, the routers, the tunnels and the clients stay in the root namespace and bind
``root_ip``, an address added to the root loopback so that it stays reachable while a veth is down.
Each namespace routes everything through its veth, and the root namespace forwards between them
(``net.ipv4.ip_forward``, restored on exit). ``zone.cut()`` partitions zone a from zone b and the
routers; ``lone.cut()`` partitions fe-b2 from every other daemon; ``heal()`` undoes either.
Needs root and iproute2: ``tests.support.netns.available()``.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import netns

FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass(frozen=True)
class ChaosNet:
    root_ip: str
    zone: netns.NetHost  # zone a: fe-a1, fe-a2
    lone: netns.NetHost  # fe-b2


def _restore_forwarding(previous: str, ours: set[str]) -> None:
    """Put ``ip_forward`` back, unless another run's namespaces still route through the root
    namespace: turning forwarding off under a concurrent chaos run silently cut its zone a from
    fe-b2 (TCP between namespaces stalled for 30 s while gossip, probing indirectly, saw no one
    down)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    others = [line.split()[0] for line in listed.splitlines() if line.strip()]
    if any(n.startswith(netns.PREFIX) and n not in ours for n in others):
        return
    FORWARD.write_text(previous + "\n")


@contextmanager
def chaos_net() -> Iterator[ChaosNet]:
    """Create the namespaces, routes and the root address; remove them (and restore forwarding) on exit."""
    root_ip = f"10.231.255.{random.randrange(1, 255)}"
    previous = FORWARD.read_text().strip()
    with ExitStack() as stack:
        _ip("addr", "add", f"{root_ip}/32", "dev", "lo")
        stack.callback(
            subprocess.run,
            ["ip", "addr", "del", f"{root_ip}/32", "dev", "lo"],
            capture_output=True,
            timeout=10,
        )
        zone = stack.enter_context(netns.isolated_host())
        lone = stack.enter_context(netns.isolated_host())
        for host in (zone, lone):
            _ip("-n", host.netns, "route", "add", "default", "via", host.root_ip)
        FORWARD.write_text("1\n")
        stack.callback(_restore_forwarding, previous, {zone.netns, lone.netns})
        yield ChaosNet(root_ip=root_ip, zone=zone, lone=lone)
