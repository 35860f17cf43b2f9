"""A test host in its own network namespace, joined to the root namespace by a veth pair.

``isolated_host()`` creates namespace ``ct-<id>`` and veth ``cta<id>``/``ctb<id>`` on a /30 in
10.231.0.0/16 (addresses of our own namespaces only), and removes them on exit. ``cut()`` takes the
link down: every packet between the host and everything else is lost, as in a real partition, and
new connections to it fail with "network unreachable"; ``heal()`` brings it back.
Needs root and iproute2 (``ip``); ``available()`` says whether this machine has both.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def available() -> tuple[bool, str]:
    """(usable, reason): root, iproute2, and permission to create a namespace."""
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    if shutil.which("ip") is None:
        return False, "iproute2 ('ip') is not installed"
    name = f"ct-probe-{os.getpid()}"
    try:
        _ip("netns", "add", name)
        _ip("netns", "del", name)
    except (subprocess.CalledProcessError, OSError) as exc:
        return False, f"cannot create a network namespace: {exc}"
    return True, ""


@dataclass(frozen=True)
class NetHost:
    netns: str
    root_veth: str
    root_ip: str  # the root namespace's address on the link: bind the other daemons here
    host_ip: str  # the namespaced host's address

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]

    def cut(self) -> None:
        _ip("link", "set", self.root_veth, "down")

    def heal(self) -> None:
        _ip("link", "set", self.root_veth, "up")


PREFIX = "ct-"  # every namespace of ours is named so (bench/chaos/net.py looks for other runs')


@contextmanager
def isolated_host() -> Iterator[NetHost]:
    tag = f"{os.getpid() % 10000}{random.randrange(100, 999)}"
    netns, a, b = f"{PREFIX}{tag}", f"cta{tag}", f"ctb{tag}"
    # 10.231.255.x is left to chaos_net's root address.
    octet3, octet4 = random.randrange(0, 255), random.randrange(0, 63) * 4
    root_ip, host_ip = f"10.231.{octet3}.{octet4 + 1}", f"10.231.{octet3}.{octet4 + 2}"
    _ip("netns", "add", netns)
    try:
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        _ip("link", "set", b, "netns", netns)
        _ip("addr", "add", f"{root_ip}/30", "dev", a)
        _ip("link", "set", a, "up")
        _ip("-n", netns, "addr", "add", f"{host_ip}/30", "dev", b)
        _ip("-n", netns, "link", "set", b, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        yield NetHost(netns=netns, root_veth=a, root_ip=root_ip, host_ip=host_ip)
    finally:
        subprocess.run(["ip", "link", "del", a], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=10)
