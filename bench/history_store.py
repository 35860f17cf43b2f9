"""The cost per publish of writing through to each history store, against memory only.

    python bench/history_store.py                          # 10 s each: memory, sqlite, postgresql
    python bench/history_store.py --seconds 5 --publishers 16 --stores memory,sqlite
    python bench/history_store.py --rounds 3               # interleaved, medians over the rounds

One dev frontend per store, one after the other in the same run: ``memory`` (no rule persists the
channel, the baseline), ``sqlite`` (a persist rule, the embedded store on a temp file) and
``postgresql`` (a persist rule, Debian's PostgreSQL started for the run by deploy/localpg.py, with
fsync on). ``--publishers`` concurrent publishers (trio SDK, over ``--connections`` connections)
each publish one message and wait for its ACK, for ``--seconds``, on one channel: the ACK waits for
the write-through, so the ACK latency is the cost a publisher sees. Prints JSON: msg/s and the
publish->ACK latency percentiles per store, and for each store the msg/s ratio and the p50/p99
added over the memory baseline measured in the same run, and the store's own mean time per batch
write (``continuity_history_write_seconds``). A store whose server is absent is reported as
skipped with the reason.

On a shared machine the load drifts within a run as much as the cost being measured: with
``--rounds N`` the stores are run in turn N times (memory, sqlite, postgresql, memory, ...), each
round's figures are kept under ``rounds``, and the per-store figures are the medians over the
rounds (so drift hits every store alike).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness as H
import trio

sys.path.insert(0, str(H.ROOT))
import continuity

CHANNEL = "bench:history"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(url: str, args: argparse.Namespace) -> dict[str, Any]:
    latencies: list[float] = []
    acked = 0
    deadline = 0.0

    async def publisher(ch: continuity.Channel, k: int) -> None:
        nonlocal acked
        n = 0
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            await ch.publish("n", {"k": k, "n": n, "pad": "x" * args.size})
            latencies.append((time.perf_counter() - t0) * 1000)
            acked += 1
            n += 1

    conns = []
    async with trio.open_nursery() as nursery:
        for _ in range(args.connections):
            conn = await nursery.start(_connection, url)
            conns.append(conn)
        chans = [c.channel(CHANNEL) for c in conns]
        for ch in chans:
            await ch.attach()
        # Warm-up: the channel's home, the store's connection and its first transaction.
        for ch in chans:
            await ch.publish("warm", "x")
        deadline = time.monotonic() + args.seconds
        started = time.monotonic()
        async with trio.open_nursery() as pubs:
            for k in range(args.publishers):
                pubs.start_soon(publisher, chans[k % len(chans)], k)
        elapsed = time.monotonic() - started
        nursery.cancel_scope.cancel()
    latencies.sort()
    return {"acked": acked, "msg_per_s": round(acked / elapsed, 1), "ack_ms": H.summary_ms(latencies)}


async def _connection(url: str, *, task_status: trio.TaskStatus[continuity.Connection]) -> None:
    async with continuity.connect(url, key=H.BENCH_KEY) as conn:
        task_status.started(conn)
        await trio.sleep_forever()


def run_store(store: str, args: argparse.Namespace, workdir: Path, pg_dsn: str | None) -> dict[str, Any]:
    extra = ""
    if store == "sqlite":
        extra = f'history_store = "sqlite:{workdir / "history.sqlite3"}"\n'
    elif store == "postgresql":
        extra = f'history_store = "{pg_dsn}"\n'
    if store != "memory":
        extra += '[channels."bench:*"]\npersist = "1h"\n'
    H.progress(f"history_store: {store}")
    fe = H.Frontend(workdir, extra)
    try:
        result = trio.run(load, fe.url, args)
        metrics = fe.metrics()
        result["store_writes"] = metrics.get("continuity_history_written_total", 0.0)
        batches = metrics.get("continuity_history_write_seconds_count", 0.0)
        result["entries_per_batch"] = round(result["store_writes"] / batches, 2) if batches else None
        spent = metrics.get("continuity_history_write_seconds_sum", 0.0)
        result["batch_write_ms_mean"] = round(spent / batches * 1000, 3) if batches else None
        return result
    finally:
        fe.stop()


def start_postgres(workdir: Path) -> tuple[str | None, str | None]:
    """The DSN of a fresh local PostgreSQL (deploy/localpg.py), or (None, why not)."""
    port = free_port()
    cmd = [
        sys.executable,
        str(H.ROOT / "deploy" / "localpg.py"),
        "up",
        "--state-dir",
        str(workdir),
        "--port",
        str(port),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        return None, (done.stderr or done.stdout).strip()
    return done.stdout.strip().splitlines()[-1], None


def stop_postgres(workdir: Path) -> None:
    cmd = [sys.executable, str(H.ROOT / "deploy" / "localpg.py"), "down", "--state-dir", str(workdir)]
    subprocess.run(cmd, capture_output=True, timeout=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--publishers", type=int, default=16, help="concurrent publish-and-wait loops")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--size", type=int, default=100, help="payload padding, in bytes")
    p.add_argument("--stores", default="memory,sqlite,postgresql")
    p.add_argument("--rounds", type=int, default=1, help="run the stores in turn this many times")
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    H.install_cleanup()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    results: dict[str, Any] = {}
    pg_dir = H.tempdir("history-pg-")
    pg_dsn, pg_error = (None, None)
    if "postgresql" in stores:
        pg_dsn, pg_error = start_postgres(pg_dir)
    rounds: list[dict[str, Any]] = []
    try:
        for n in range(args.rounds):
            one: dict[str, Any] = {}
            for store in stores:
                if store == "postgresql" and pg_dsn is None:
                    one[store] = {"skipped": pg_error}
                    continue
                one[store] = run_store(store, args, H.tempdir(f"history-{store}-{n}-"), pg_dsn)
            rounds.append(one)
        results = rounds[0] if args.rounds == 1 else {s: _median(rounds, s) for s in stores}
    finally:
        if pg_dsn is not None:
            stop_postgres(pg_dir)
    base = results.get("memory")
    if base and "msg_per_s" in base:
        for store, r in results.items():
            if store == "memory" or "msg_per_s" not in r:
                continue
            r["vs_memory"] = {
                "msg_per_s_ratio": H.ratio(r["msg_per_s"], base["msg_per_s"]),
                "p50_added_ms": _added(r, base, "p50"),
                "p99_added_ms": _added(r, base, "p99"),
            }
    H.emit(
        {
            "benchmark": "history_store",
            "config": vars(args),
            "machine": H.machine(),
            "results": results,
            **({"rounds": rounds} if args.rounds > 1 else {}),
        }
    )


def _median(rounds: list[dict[str, Any]], store: str) -> dict[str, Any]:
    """One store's figures, each the median over the rounds that measured it."""
    runs = [r[store] for r in rounds if "msg_per_s" in r[store]]
    if not runs:
        return rounds[0][store]

    def med(values: list[Any]) -> Any:
        present = [v for v in values if v is not None]
        return round(statistics.median(present), 3) if present else None

    keys = ("acked", "msg_per_s", "store_writes", "entries_per_batch", "batch_write_ms_mean")
    out: dict[str, Any] = {k: med([r.get(k) for r in runs]) for k in keys}
    out["ack_ms"] = {q: med([r["ack_ms"].get(q) for r in runs]) for q in ("p50", "p99", "max")}
    out["rounds"] = len(runs)
    return out


def _added(r: dict[str, Any], base: dict[str, Any], q: str) -> float | None:
    a, b = r["ack_ms"].get(q), base["ack_ms"].get(q)
    return None if a is None or b is None else round(a - b, 3)


if __name__ == "__main__":
    main()
