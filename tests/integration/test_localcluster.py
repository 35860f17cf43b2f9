"""deploy/localcluster.py end to end: up, status, kill -9 of a frontend, start, down.

The cluster runs from a temporary state dir on shifted ports, so it collides neither with a
developer's `.cluster/` nor with a running `make run`. Every wait is a deadline-bounded poll.
"""

from __future__ import annotations

import importlib
import json
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "localcluster.py"
# Port offsets tried in turn if another run holds the ports; 3000 apart, so no two overlap
# (the local ports span 7001-9202), and all below the Linux ephemeral range.
OFFSETS = (10_000, 13_000, 16_000, 19_000, 22_000)
CLI_TIMEOUT_S = 35.0
DEAD_WITHIN_S = 10.0
ALL_NODES = {"rt1", "rt2", "fe-a1", "fe-a2", "fe-b1", "fe-b2"}


def load_script(name: str = "localcluster") -> ModuleType:
    """``deploy/<name>.py``, imported as the script imports its modules: by plain name, from deploy/
    (a folder of scripts, not a package)."""
    if str(SCRIPT.parent) not in sys.path:
        sys.path.append(str(SCRIPT.parent))
    return importlib.import_module(name)


async def cli(state_dir: Path, *args: str, check: bool = True) -> tuple[int, str, str]:
    """Run ``localcluster.py ARGS --state-dir STATE_DIR``; return (code, stdout, stderr)."""
    with trio.fail_after(CLI_TIMEOUT_S):
        proc = await trio.run_process(
            [sys.executable, str(SCRIPT), *args, "--state-dir", str(state_dir)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=REPO,
        )
    out, err = proc.stdout.decode(), proc.stderr.decode()
    if check:
        assert proc.returncode == 0, f"localcluster {' '.join(args)} failed:\n{out}\n{err}"
    return proc.returncode, out, err


async def status(state_dir: Path) -> dict[str, dict[str, Any]]:
    """The map as the status command reports it, by node."""
    _, out, _ = await cli(state_dir, "status", "--json", check=False)
    return {row["node"]: row for row in json.loads(out)["nodes"]}


async def wait_for(state_dir: Path, node: str, field: str, value: Any, within: float) -> dict[str, Any]:
    with trio.fail_after(within):
        while True:
            rows = await status(state_dir)
            if rows[node][field] == value:
                return rows
            await trio.sleep(0.1)  # the interval of a deadline-bounded poll


@pytest.mark.integration
async def test_up_kill_start_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "cluster"
    with trio.fail_after(60):
        try:
            for offset in OFFSETS:
                code, out, err = await cli(state_dir, "up", "--port-offset", str(offset), check=False)
                if code == 0 or "is in use" not in err:
                    break
            assert code == 0, f"up failed:\n{out}\n{err}"

            rows = await status(state_dir)
            assert set(rows) == ALL_NODES
            assert all(r["status"] == "alive" and r["alive-by-pid"] == "yes" for r in rows.values()), rows
            assert rows["fe-a1"]["address"] == f"127.0.0.1:{8101 + offset}"

            # Idempotent: a second `up` starts nothing.
            _, out, _ = await cli(state_dir, "up", "--port-offset", str(offset))
            assert "already running" in out

            await cli(state_dir, "kill", "fe-a1", "--signal", "KILL")
            rows = await wait_for(state_dir, "fe-a1", "status", "dead", within=DEAD_WITHIN_S)
            assert rows["fe-a1"]["alive-by-pid"] == "no"
            assert rows["fe-a2"]["status"] == "alive"

            await cli(state_dir, "start", "fe-a1")
            rows = await status(state_dir)
            assert rows["fe-a1"]["status"] == "alive" and rows["fe-a1"]["alive-by-pid"] == "yes", rows

            code, _, err = await cli(state_dir, "kill", "fe-zz", check=False)
            assert code == 1 and "unknown node 'fe-zz'" in err
        finally:
            await cli(state_dir, "down", check=False)
        assert not list((state_dir / "pids").iterdir())
        code, _, _ = await cli(state_dir, "status", check=False)
        assert code == 1


def test_configs_are_shifted_and_round_trip() -> None:
    lc = load_script("localcluster_nodes")
    specs = {s.name: s for s in lc.topology(1000)}
    assert set(specs) == ALL_NODES
    fe = specs["fe-b2"]
    assert (fe.client_port, fe.gossip_port, fe.peer_port) == (9202, 8202, 10202)
    assert fe.config["seeds"] == ["127.0.0.1:8101", "127.0.0.1:8201"]
    assert specs["rt2"].client_port == 9090 and specs["rt2"].peer_port is None
    assert tomllib.loads(lc.render_toml(fe.config)) == fe.config


def test_convergence_problems_name_the_silent_and_the_unseen() -> None:
    lc = load_script("localcluster_map")
    alive = [{"node_id": n, "status": "alive"} for n in ("a", "b")]
    assert lc.convergence_problems(["a", "b"], {"a": alive, "b": alive}) == []
    problems = lc.convergence_problems(
        ["a", "b", "c"], {"a": [*alive, {"node_id": "c", "status": "suspect"}], "b": alive, "c": None}
    )
    assert problems == ["a sees c as suspect", "b sees c as unknown", "c does not answer GET /cluster"]
    assert lc.culprit(["a", "b", "c"], problems) == "c"
