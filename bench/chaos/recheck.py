"""Judge a kept chaos run again with the current checker: ``python -m bench.chaos.recheck WORKDIR``.

Reads ``WORKDIR/run.json`` (written by ``--workdir`` or by a failing run) and the frontends' logs
beside it; prints the violation counts and the first examples as JSON. A run.json from before the
driver recorded ``wall_t0``, ``down`` and ``separations`` is judged without the home checks (the
node logs' times cannot be put on the run's clock) unless ``--wall-t0`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.chaos import checker, nodelogs, tenures  # noqa: E402
from bench.chaos.config import FRONTENDS, IDLE_MS, PRESENCE_LINGER_MS, TTL_MS  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workdir", type=Path)
    p.add_argument("--wall-t0", type=float, default=None, help="wall time of the run's t0 (epoch seconds)")
    p.add_argument("--examples", type=int, default=20)
    args = p.parse_args(argv)
    run = json.loads((args.workdir / "run.json").read_text())
    wall_t0 = args.wall_t0 if args.wall_t0 is not None else run.get("wall_t0")
    cluster = None
    if wall_t0 is not None:
        paths = [(name, args.workdir / f"{name}.log") for name, _ in FRONTENDS]
        cluster = tenures.ClusterRecord(
            events=nodelogs.home_events(paths, wall_t0),
            detached=nodelogs.detach_times(paths, wall_t0),
            down=run.get("down", []),
            separations=run.get("separations", []),
            retention_s=(TTL_MS + IDLE_MS) / 1000,
        )
    v = checker.check(
        run["publishes"],
        run["logs"],
        faults=run["faults"],
        ttl_s=TTL_MS / 1000,
        cluster=cluster,
        presence_linger_s=PRESENCE_LINGER_MS / 1000,
    )
    print(
        json.dumps(
            {
                "ok": v.ok,
                "violations": v.counts,
                "home_checks": cluster is not None,
                "examples": v.examples[: args.examples],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
