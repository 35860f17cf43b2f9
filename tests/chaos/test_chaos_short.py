"""The short seeded chaos run (``python -m bench.chaos``, as ``make chaos`` runs it) must pass.

20 faults of every kind, overlapping, on a real cluster; the summary must show every fault applied
and no lost, duplicated, out-of-order, split-brain or silently skipped message.
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
BOUND_S = 240


async def test_short_chaos_run_passes(tmp_path: Path) -> None:
    with trio.fail_after(BOUND_S):
        proc = await trio.run_process(
            [
                sys.executable,
                "-m",
                "bench.chaos",
                "--faults",
                str(FAULTS),
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
    assert summary["messages"]["acked"] > 0 and summary["messages"]["delivered"] > 0
