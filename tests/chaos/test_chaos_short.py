"""The short seeded chaos run (``python -m bench.chaos``, as ``make chaos`` runs it) must pass.

20 faults of every kind (a zone loss and a router kill while settling among them), overlapping, on a
real cluster with 10 load clients; the summary must show every fault applied and every violation count
0 (the checks of bench/chaos/checker.py and tenures.py), and no unexplained outage of 1 s or more.
Its publishers await each ACK (``--pipeline 1``): with publishes in flight (``make chaos``'s default)
the publisher-order check finds issue 11's open bug (two of one connection's publishes numbered in
the reverse of their msgSerials after a home change), which this gate does not yet hold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import trio

from tests.support.procs import REPO

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

SEED = 20_240_611
FAULTS = 20
CLIENTS = 10
BOUND_S = 420


async def test_short_chaos_run_passes(tmp_path: Path) -> None:
    with trio.fail_after(BOUND_S):
        proc = await trio.run_process(
            [
                sys.executable,
                "-m",
                "bench.chaos",
                "--faults",
                str(FAULTS),
                "--clients",
                str(CLIENTS),
                "--pipeline",
                "1",
                "--seed",
                str(SEED),
                "--workdir",
                str(tmp_path),
            ],
            cwd=str(REPO),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    out = proc.stdout.decode()
    assert out.strip(), proc.stderr.decode()[-4000:]
    summary = json.loads(out)
    assert summary["seed"] == SEED
    assert summary["faults_applied_total"] == FAULTS
    assert proc.returncode == 0 and summary["ok"], json.dumps(
        {k: summary.get(k) for k in ("violations", "problems", "examples", "reproduction", "workdir")},
        indent=1,
    )
    assert summary["lost"] == summary["duplicated"] == summary["out_of_order"] == summary["silent_gaps"] == 0
    assert not any(summary["violations"].values()) and not summary["problems"]
    assert summary["messages"]["acked"] > 0 and summary["messages"]["delivered"] > 0
