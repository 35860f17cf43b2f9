"""``make conformance ABLYJS=<checkout>``: ably-js's own test suite against a local Continuity cluster.

Theory of operation. The ably-js checkout is prepared beforehand (README, "The upstream ably-js
suite"); nothing is fetched here. This script

1. starts a ``make run``-style cluster (``deploy/localcluster.py up``: 2 routers, 4 dev-mode
   frontends) with its ports shifted by ``--port-offset`` and its state in a temporary directory;
   its frontends refuse unknown keys (``dev_accept_any_key = false``) as Ably does. Each lane after
   the first gets a fresh cluster: on Ably every run's sandbox app starts with no channel history,
   but here channels are not scoped by app, so a lane would otherwise read the previous lane's
   messages in history (the suite uses fixed channel names: encoding's and REST message's history
   checks then count double);
2. runs each test file with mocha, once per lane, under ``--file-timeout``, with the harness pointed
   at the router (``ABLY_LOCAL_SANDBOX_URL``: the dev-mode sandbox provisions the test app, and its
   reply routes every client to the router). The ``comet`` lane sets ``ABLY_TEST_TRANSPORTS=comet``
   (tests that loop over transports) and requires ``comet_lane.js`` (every other client defaults to
   Comet); the ``web_socket`` lane sets ``ABLY_TEST_TRANSPORTS=web_socket``. A file that defines no
   test on a single-transport lane (``transports.test.js`` needs more than one) is run once with
   both, reported under the lane ``both``;
3. reads what ran from ``reporter.js``'s event file. A file that aborts (a timeout, or mocha
   stopping after a test called ``done`` twice) leaves tests that never ran: they are re-run, in a
   new mocha with a ``--grep`` matching exactly them, until a round runs none of them;
4. re-runs each failure alone (up to ``--isolate`` per file): one that passes alone failed from an
   earlier test's leftovers, and is counted in ``passed_alone`` (it stays in ``failed``);
5. prints a JSON summary: per lane and file, passed, failed, pending, not_run (blocked by a failing
   hook, or never reached), passed_alone, hook failures, rounds, seconds, and the failing titles with
   their error;
   and writes it to ``--out``. Logs of every round are kept under ``--logs``.

The cluster is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLUSTER = [sys.executable, str(REPO / "deploy" / "localcluster.py")]
ROUTER_PORT = 8080  # rt1 in deploy/local/rt1.toml, before the offset
LANES = ("web_socket", "comet")
BOTH = "both"  # both transports: for files whose tests need more than one (upgrade, fallback)
REALTIME_FILES = (
    "channel",
    "resume",
    "message",
    "init",
    "transports",
    "failure",
    "connectivity",
    "reauth",
    "sync",
    "crypto",
    "encoding",
    "updates-deletes",
    "annotations",
)
DEFAULT_FILES = tuple(f"test/realtime/{name}.test.js" for name in REALTIME_FILES)
# A round that aborts leaves the rest to the next one, so a file whose every other test aborts mocha
# (realtime/auth: each test fetching a JWT from echo.ably.io throws when offline) needs a round per
# test; rounds stop at the first that makes no progress, this only bounds a pathological file.
MAX_ROUNDS = 40


@dataclass
class FileResult:
    """What one test file did on one lane, over all its rounds."""

    planned: list[str] = field(default_factory=list)
    passed: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    hook_failures: list[dict[str, str]] = field(default_factory=list)
    passed_alone: set[str] = field(default_factory=set)
    rounds: int = 0
    timed_out: int = 0
    seconds: float = 0.0

    def seen(self) -> set[str]:
        return self.passed | set(self.failed) | self.pending

    def summary(self) -> dict[str, Any]:
        not_run = [t for t in self.planned if t not in self.seen()]
        return {
            "started": bool(self.planned),
            "passed": len(self.passed),
            "failed": len(self.failed),
            "pending": len(self.pending),
            "not_run": len(not_run),
            "passed_alone": len(self.passed_alone),
            "hook_failures": len(self.hook_failures),
            "rounds": self.rounds,
            "timed_out_rounds": self.timed_out,
            "seconds": round(self.seconds, 1),
            "failures": dict(sorted(self.failed.items())),
            "passed_alone_titles": sorted(self.passed_alone),
            "hooks": self.hook_failures,
            "not_run_titles": not_run,
        }


def check_checkout(root: Path) -> None:
    needed = {
        "build/ably-node.js": "copy node_modules/ably/build/* (the published npm ably) to build/",
        "node_modules/.bin/mocha": "install the test dependencies (README)",
        "node_modules/async/package.json": "install the ably-forks/async tarball (README)",
        "test/common/ably-common/test-resources/test-app-setup.json": (
            "place ably-common at test/common/ably-common"
        ),
        "test/realtime": "this is not an ably-js checkout",
    }
    missing = [f"{path}: {fix}" for path, fix in needed.items() if not (root / path).exists()]
    if missing:
        raise SystemExit("conformance: the ably-js checkout is not ready:\n  " + "\n  ".join(missing))


def run_round(
    root: Path, test_file: str, lane: str, port: int, grep: str | None, timeout_s: float, log: Path
) -> tuple[list[dict[str, Any]], bool]:
    """One mocha run; returns the reporter's events and whether it was killed by the timeout."""
    with tempfile.NamedTemporaryFile(prefix="conformance-", suffix=".jsonl", delete=False) as tmp:
        events_path = Path(tmp.name)
    env = {
        **os.environ,
        "ABLY_LOCAL_SANDBOX_URL": f"http://127.0.0.1:{port}",
        "ABLY_ENDPOINT": "127.0.0.1",
        "ABLY_PORT": str(port),
        "ABLY_TLS_PORT": str(port),
        "ABLY_USE_TLS": "false",
        "ABLY_TEST_TRANSPORTS": lane if lane in LANES else ",".join(LANES),
        "CONFORMANCE_EVENTS": str(events_path),
    }
    cmd = [
        "node",
        str(root / "node_modules" / ".bin" / "mocha"),
        "--exit",
        "--timeout",
        "60000",
        "--reporter",
        str(HERE / "reporter.js"),
    ]
    if lane == "comet":
        cmd += ["--require", str(HERE / "comet_lane.js")]
    if grep is not None:
        cmd += ["--grep", grep]
    cmd.append(test_file)
    timed_out = False
    with open(log, "ab") as out:
        out.write(f"\n=== {' '.join(cmd[2:])}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, 9)
            proc.wait()
            out.write(f"\n=== killed after {timeout_s:g} s\n".encode())
    events = []
    for line in events_path.read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    events_path.unlink(missing_ok=True)
    return events, timed_out


def exact_grep(titles: list[str]) -> str:
    return "^(" + "|".join(re.escape(t) for t in titles) + ")$"


def run_file(
    root: Path, test_file: str, lane: str, port: int, timeout_s: float, logs: Path, isolate: int
) -> FileResult:
    result = FileResult()
    log = logs / f"{lane}-{Path(test_file).name}.log"
    log.unlink(missing_ok=True)
    started = time.monotonic()
    remaining: list[str] | None = None
    while result.rounds < MAX_ROUNDS:
        grep = exact_grep(remaining) if remaining is not None else None
        events, timed_out = run_round(root, test_file, lane, port, grep, timeout_s, log)
        result.rounds += 1
        result.timed_out += int(timed_out)
        before = len(result.seen())
        for ev in events:
            kind, title = ev.get("e"), ev.get("title")
            if kind == "plan" and not result.planned:
                result.planned = list(ev.get("tests") or [])
            elif kind == "pass" and title:
                result.passed.add(title)
                result.failed.pop(title, None)
            elif kind == "pending" and title:
                result.pending.add(title)
            elif kind == "fail" and title:
                if ev.get("hook"):
                    result.hook_failures.append(
                        {"hook": ev.get("hookTitle") or "", "error": ev.get("error") or ""}
                    )
                    if title not in result.planned:
                        continue
                if title not in result.passed:
                    result.failed[title] = ev.get("error") or ""
        remaining = [t for t in result.planned if t not in result.seen()]
        if not remaining or len(result.seen()) == before:
            break
    # A failure may come from an earlier test's leftovers (a timer firing into the next test, a
    # callback called twice): re-run up to ``isolate`` failures alone and count those that pass.
    # Those that look like leftovers (a callback or done called twice, a timeout) are tried first.
    leftover = ("called multiple times", "already called", "Timeout of")
    suspects = sorted(result.failed, key=lambda t: (not any(m in result.failed[t] for m in leftover), t))
    for title in suspects[:isolate]:
        events, _ = run_round(root, test_file, lane, port, exact_grep([title]), timeout_s, log)
        if any(ev.get("e") == "pass" and ev.get("title") == title for ev in events):
            result.passed_alone.add(title)
    result.seconds = time.monotonic() - started
    return result


def cluster(command: str, state: Path, offset: int) -> None:
    args = [*CLUSTER, command, "--state-dir", str(state)]
    if command == "up":
        args += ["--port-offset", str(offset), "--timeout", "60"]
    # Dev mode for the sandbox, but an unknown key gets 40101 as on Ably (the suite checks it).
    env = {**os.environ, "CONTINUITY_DEV_ACCEPT_ANY_KEY": "false"}
    subprocess.run(args, cwd=REPO, check=True, stdout=sys.stderr, env=env)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="make conformance",
        description="Run ably-js's test suite, file by file and lane by lane, against a local cluster "
        "through a router, and print a JSON summary.",
    )
    p.add_argument("--ablyjs", type=Path, required=True, help="a prepared ably-js checkout (README)")
    p.add_argument("--files", nargs="*", default=list(DEFAULT_FILES),
                   help="test files relative to the checkout (default: the realtime files of issue 17)")
    p.add_argument("--lanes", nargs="*", default=list(LANES), choices=[*LANES, BOTH])
    p.add_argument("--file-timeout", type=float, default=900.0, help="seconds per mocha run (default 900)")
    p.add_argument("--isolate", type=int, default=40,
                   help="re-run up to this many failures of each file alone (counted as passed_alone)")
    p.add_argument("--port-offset", type=int, default=3000, help="cluster ports: deploy/local + this")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "conformance.json")
    p.add_argument("--logs", type=Path, default=REPO / "bench" / "results" / "conformance-logs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.ablyjs.resolve()
    check_checkout(root)
    if shutil.which("node") is None:
        raise SystemExit("conformance: node is not on PATH")
    args.logs.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    port = ROUTER_PORT + args.port_offset
    # Each cluster port is deploy/local's plus the offset (client 80xx/81xx, gossip 70xx/71xx, peer
    # 91xx): two runs at once need offsets that keep all three ranges apart (e.g. 3000 and 3400).
    summary: dict[str, Any] = {"ablyjs": str(root), "router": f"127.0.0.1:{port}", "lanes": {}}
    for lane in args.lanes:
        # A fresh cluster per lane: the sandbox's apps share one channel namespace (Ably scopes
        # channels by app), so a lane must not see what the previous lane left in a channel's
        # history or presence set (presence.test.js presenceHistory counts the events of 'history').
        run_lane(args, root, port, lane, summary)
    totals: dict[str, dict[str, int]] = {}
    summary["lanes"] = {lane: files for lane, files in summary["lanes"].items() if files}
    for lane, files in summary["lanes"].items():
        totals[lane] = {
            k: sum(f[k] for f in files.values())
            for k in ("passed", "failed", "pending", "not_run", "passed_alone")
        }
    summary["totals"] = totals
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    brief = {
        "totals": summary.get("totals"),
        "files": {
            lane: {
                f: {k: v[k] for k in ("passed", "failed", "pending", "not_run", "passed_alone")}
                for f, v in files.items()
            }
            for lane, files in summary["lanes"].items()
        },
        "details": str(args.out),
    }
    print(json.dumps(brief, indent=1))
    return 0


def run_lane(args: argparse.Namespace, root: Path, port: int, lane: str, summary: dict[str, Any]) -> None:
    """Every file on one lane, against a cluster started for it and stopped after."""
    state = Path(tempfile.mkdtemp(prefix="continuity-conformance-"))
    try:
        try:
            cluster("up", state, args.port_offset)
        except subprocess.CalledProcessError:
            raise SystemExit(
                f"conformance: the cluster did not start (ports of deploy/local + {args.port_offset}, "
                "see above): pick another --port-offset"
            ) from None
        files: dict[str, Any] = {}
        summary["lanes"][lane] = files
        for test_file in args.files:
            res = run_file(root, test_file, lane, port, args.file_timeout, args.logs, args.isolate)
            files[test_file] = res.summary()
            line = {
                k: files[test_file][k] for k in ("passed", "failed", "pending", "not_run", "passed_alone")
            }
            if not res.planned:
                line["error"] = f"no test defined on this lane: see {args.logs}"
            print(f"conformance: {lane} {test_file} {json.dumps(line)}", file=sys.stderr, flush=True)
            args.out.write_text(json.dumps(summary, indent=1) + "\n")
            both = summary["lanes"].setdefault(BOTH, {})
            if not res.planned and lane != BOTH and test_file not in both:
                res = run_file(root, test_file, BOTH, port, args.file_timeout, args.logs, args.isolate)
                both[test_file] = res.summary()
                line = {k: both[test_file][k] for k in ("passed", "failed", "pending", "not_run")}
                print(f"conformance: {BOTH} {test_file} {json.dumps(line)}", file=sys.stderr, flush=True)
                args.out.write_text(json.dumps(summary, indent=1) + "\n")
    finally:
        try:
            cluster("down", state, args.port_offset)
        finally:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
