"""The failover bench's view of the cluster (``bench/failover.py``): where the channels' homes are,
waiting for them to settle once the spares joined, which frontend to kill, and what the processes do
around the kill (the CPU they use, ``--profile``'s py-spy).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import trio

from kernel.placement import rendezvous_order
from tests.support.cluster import LocalCluster


async def settle_homes(
    cluster: LocalCluster, channels: list[str], within: float
) -> tuple[dict[str, list[str]], bool]:
    """Wait (at most ``within`` s) until each channel is home on exactly one running frontend, the first
    of its rendezvous order over the running frontends (the placement every daemon computes once the
    spares joined). Returns (channel -> the frontends claiming it at the end, whether that happened)."""
    running = [fe.name for fe in cluster.frontends if fe.running]
    want = {ch: rendezvous_order(ch, running)[0] for ch in channels}
    claims: dict[str, list[str]] = {}
    with trio.move_on_after(within):
        while True:
            claims = {ch: [] for ch in channels}
            for fe in cluster.frontends:
                if fe.running:
                    for ch in (await fe.get_json("/cluster"))["channels"]["home"]:
                        claims.setdefault(ch, []).append(fe.name)
            if all(claims[ch] == [want[ch]] for ch in channels):
                return claims, True
            await trio.sleep(0.1)
    return claims, False


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


Spy = tuple[str, subprocess.Popen[bytes], Path]


def profile_start(args: argparse.Namespace, pids: dict[str, int]) -> list[Spy]:
    """``--profile DIR``: ``py-spy record`` on every surviving process from just before the kill."""
    if not args.profile:
        return []
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, pid in pids.items():
        raw = out / f"{name}.raw"
        cmd = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--duration"]
        cmd += [str(args.profile_s), "--rate", "100", "--nonblocking", "--format", "raw"]
        cmd += ["--output", str(raw)]
        spies.append((name, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), raw))
    return spies


async def profile_stop(spies: list[Spy]) -> dict[str, str]:
    """Wait for the profilers (they stop after ``--profile-s``); the raw stacks' paths."""
    out = {}
    for name, proc, raw in spies:
        try:
            await trio.to_thread.run_sync(lambda: proc.wait(timeout=60))  # noqa: B023
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if raw.exists():
            out[name] = str(raw)
    return out


def choose_victim(owners: Counter[str], publisher_server: str, homes: dict[str, str], policy: str) -> str:
    """The frontend to kill: ``most`` owns the most subscribers (not the publisher's frontend if another
    owns any); ``most-not-home`` the same among frontends that are no channel's home (if any); ``home``
    the home of the first channel; anything else is a node name."""
    if policy not in ("most", "most-not-home", "home"):
        return policy
    if policy == "home":
        return homes[min(homes)]
    candidates = Counter({k: v for k, v in owners.items() if k and k != publisher_server}) or owners
    if policy == "most-not-home":
        candidates = Counter({k: v for k, v in candidates.items() if k not in homes.values()}) or candidates
    return candidates.most_common(1)[0][0]
