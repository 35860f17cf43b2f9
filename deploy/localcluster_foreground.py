"""The foreground cluster (``localcluster.py run``): every node a child of this process, its output
rendered and prefixed with the node's name, until Ctrl-C or SIGTERM stops them all.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import trio
from localcluster_map import print_status, wait_until_up
from localcluster_nodes import REPO, STOP_TIMEOUT_S, ClusterError, NodeSpec, StateDir, node_command

TAG_COLOURS = (36, 33, 35, 32, 34, 31)  # ANSI: cyan, yellow, magenta, green, blue, red


def render_line(line: str) -> str:
    """A structlog JSON line as ``time level event key=value ...``; any other line unchanged. Pure."""
    try:
        event = json.loads(line)
    except ValueError:
        return line
    if not isinstance(event, dict) or "event" not in event:
        return line
    stamp = str(event.pop("timestamp", ""))[11:23]
    level = str(event.pop("level", ""))
    name = str(event.pop("event"))
    fields = " ".join(f"{k}={v if isinstance(v, (int, float)) else json.dumps(v)}" for k, v in event.items())
    return f"{stamp} {level:<7} {name} {fields}".rstrip()


def make_tag(name: str, index: int, width: int, colour: bool) -> str:
    tag = f"[{name}]".ljust(width + 2)
    return f"\x1b[{TAG_COLOURS[index % len(TAG_COLOURS)]}m{tag}\x1b[0m" if colour else tag


async def _pump(stream: trio.abc.ReceiveStream, tag: str) -> None:
    """Copy ``stream`` to our stdout line by line, each line rendered and prefixed with ``tag``."""
    pending = b""
    async for chunk in stream:
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            print(tag, render_line(line.decode(errors="replace")), flush=True)
    if pending:
        print(tag, render_line(pending.decode(errors="replace")), flush=True)


async def _watch(proc: trio.Process, tag: str) -> None:
    code = await proc.wait()
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    print(tag, how, flush=True)


async def _stop_children(procs: Mapping[str, trio.Process], signals: Any) -> None:
    """SIGTERM every child and wait; SIGKILL them all at the deadline or on a second Ctrl-C."""
    for proc in procs.values():
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)

    async def kill_on_signal(scope: trio.CancelScope) -> None:
        async for _ in signals:
            print("second signal: killing every node", flush=True)
            scope.cancel()
            return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(kill_on_signal, nursery.cancel_scope)
        with trio.move_on_after(STOP_TIMEOUT_S):
            for proc in procs.values():
                await proc.wait()
        nursery.cancel_scope.cancel()
    for name, proc in procs.items():
        if proc.returncode is None:
            print(f"{name}: still running, sent SIGKILL", flush=True)
            proc.kill()
            await proc.wait()


async def _serve_foreground(state: StateDir, specs: Sequence[NodeSpec], up_timeout_s: float) -> int:
    colour = sys.stdout.isatty()
    width = max(len(s.name) for s in specs)
    code = 0
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            procs: dict[str, trio.Process] = {}
            for i, spec in enumerate(specs):
                tag = make_tag(spec.name, i, width, colour)
                proc = await trio.lowlevel.open_process(
                    node_command(spec, state.conf(spec.name)),
                    cwd=REPO,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                state.pid_file(spec.name).write_text(f"{proc.pid}\n")
                procs[spec.name] = proc
                assert proc.stdout is not None
                nursery.start_soon(_pump, proc.stdout, tag)
                nursery.start_soon(_watch, proc, tag)

            def exited() -> dict[str, str]:
                return {
                    n: f"exited with code {p.returncode}" for n, p in procs.items() if p.poll() is not None
                }

            async def announce(done: trio.Event) -> None:
                nonlocal code
                try:
                    await trio.to_thread.run_sync(
                        lambda: wait_until_up(state, specs, up_timeout_s, exited), abandon_on_cancel=True
                    )
                except ClusterError as exc:
                    print(f"localcluster: {exc}", file=sys.stderr, flush=True)
                    code = 1
                    done.set()
                    return
                print_status(state, specs)
                print("the cluster is up; Ctrl-C stops it", flush=True)

            async def on_signal(done: trio.Event) -> None:
                async for signum in signals:
                    print(f"{signal.Signals(signum).name}: stopping every node", flush=True)
                    done.set()
                    return

            done = trio.Event()
            nursery.start_soon(announce, done)
            nursery.start_soon(on_signal, done)
            await done.wait()
            await _stop_children(procs, signals)
            nursery.cancel_scope.cancel()
    for spec in specs:
        state.forget(spec.name)
    return code


def run_foreground(state: StateDir, specs: Sequence[NodeSpec], *, timeout: float) -> int:
    """Run every node with prefixed output until Ctrl-C/SIGTERM (or a failed start); the exit code."""
    return trio.run(_serve_foreground, state, specs, timeout)
