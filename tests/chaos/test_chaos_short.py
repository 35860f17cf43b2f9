"""The short seeded chaos run (``python -m bench.chaos``, as ``make chaos`` runs it) must pass.

20 faults of every kind of the classic schedule (``--classic``: without the zone loss and the router
kill while settling that ``make chaos`` adds), overlapping, on a real cluster with 10 load clients; the
summary must show every fault applied, every violation count 0 (the checks of bench/chaos/checker.py
and tenures.py, but NOT_YET_HELD) and no unexplained outage of 1 s or more. Its publishers await each
ACK (``--pipeline 1``); publishes in flight (``make chaos``'s default) and their order across home
kills are held by tests/integration/cluster/test_publisher_order.py.
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
# Checks of issue 18 this gate reports but does not hold yet: two homes overlapping for a fraction
# of a second when gossip declares a live home dead (on the loaded 2-core machine a starved process
# misses its probes; no run found a serial given out twice, but the tenures overlap). stale_home and
# discontinuity_within_ttl are held since the chaos branch's fixes (a lone frontend takes no home
# from its own copy; a takeover no longer answers 80008 to a key a lost handover left the client).
# The presence checks (issue 13) are held: presence_sets_disagree was the checker reading a one-page
# SYNC as its last member only, and no frontend leaves members now before every live frontend said it
# does not own the connection (a lost presence_owned push no longer makes a spurious leave).
NOT_YET_HELD = ("two_homes",)
FAULTS = 20
CLIENTS = 10
BOUND_S = 420
# What a failure prints (CI keeps no workdir: the frontends' warnings near the first violation too).
REPORTED = ("violations", "problems", "examples", "reproduction", "cluster_log_near_first", "workdir")


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
                "--classic",
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
    held = {k: v for k, v in summary["violations"].items() if k not in NOT_YET_HELD}
    assert proc.returncode in (0, 1) and not any(held.values()) and not summary["problems"], json.dumps(
        {k: summary.get(k) for k in REPORTED},
        indent=1,
    )
    assert summary["lost"] == summary["duplicated"] == summary["out_of_order"] == summary["silent_gaps"] == 0
    assert summary["messages"]["acked"] > 0 and summary["messages"]["delivered"] > 0
