#!/usr/bin/env python3
"""A local PostgreSQL for the Postgres-backed local cluster (``make cluster-up-pg``).

    localpg.py up      initdb (first time) and start it; prints the DSN; idempotent
    localpg.py dsn     print the DSN
    localpg.py down    stop it (its data stays, so history survives cluster-down/cluster-up)

Debian's server binaries (/usr/lib/postgresql/<major>/bin, from the ``postgresql`` package that
``make install`` installs when absent and it may). initdb refuses to run as root, so as root the
server runs as the ``postgres`` system user. Data, socket and log live in ``<state-dir>`` (default
``.cluster-pg/``); it listens on 127.0.0.1 only, with trust auth: a development database.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STATE_DIR = REPO / ".cluster-pg"
DEFAULT_PORT = 55432
MISSING = (
    "PostgreSQL server binaries are not installed (looked in /usr/lib/postgresql/*/bin and PATH).\n"
    "Install them with `apt-get install postgresql` (or `make install` as root), then retry."
)


def bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(Path(candidate) / "initdb", os.X_OK):
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def dsn(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def run(argv: list[str]) -> None:
    done = subprocess.run(as_owner(argv), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"localpg: {' '.join(argv[:1])} failed:\n{done.stdout}{done.stderr}")


def running(bins: Path, data: Path) -> bool:
    if not (data / "PG_VERSION").exists():
        return False
    done = subprocess.run(as_owner([str(bins / "pg_ctl"), "-D", str(data), "status"]), capture_output=True)
    return done.returncode == 0


def cmd_up(state: Path, port: int) -> int:
    bins = bindir()
    if bins is None:
        print(MISSING, file=sys.stderr)
        return 3
    data, sock = state / "data", state / "sock"
    state.mkdir(parents=True, exist_ok=True)
    sock.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        for path in (state, sock):
            shutil.chown(path, "postgres")
        for parent in state.parents:  # the server user must reach its files
            if parent == Path("/"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o001)
    if not (data / "PG_VERSION").exists():
        run([str(bins / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
    if not running(bins, data):
        options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1"
        run(
            [
                str(bins / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(state / "postgres.log"),
                "-o",
                options,
                "-w",
                "start",
            ]
        )
    print(dsn(port))
    return 0


def cmd_down(state: Path) -> int:
    bins = bindir()
    data = state / "data"
    if bins is None or not running(bins, data):
        print("localpg: not running")
        return 0
    run([str(bins / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    print("localpg: stopped (data kept in", state, ")")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="localpg.py", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["up", "dsn", "down"])
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = p.parse_args(argv)
    state = args.state_dir.resolve()
    if args.command == "up":
        return cmd_up(state, args.port)
    if args.command == "down":
        return cmd_down(state)
    print(dsn(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
