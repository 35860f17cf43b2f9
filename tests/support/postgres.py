"""A real PostgreSQL server for tests: initdb into a temp dir, pg_ctl on a free port. Never a mock.

Debian's binaries live in /usr/lib/postgresql/<major>/bin (``make install`` installs the
``postgresql`` package when absent and it may). initdb refuses to run as root, so as root the
server runs as the ``postgres`` system user (the package creates it), via runuser. When no
binaries are found the tests that need the server skip with a loud reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SKIP_REASON = (
    "PostgreSQL binaries not found (looked in /usr/lib/postgresql/*/bin and PATH): "
    "run `make install` as root to install Debian's postgresql, or apt-get install postgresql"
)


def pg_bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(Path(candidate) / "initdb", os.X_OK):
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@contextmanager
def running_postgres(workdir: Path) -> Iterator[str]:
    """Start a throwaway server; yield its DSN; stop it and remove its files.

    Its files live in a directory of their own under the system temp dir, not under ``workdir``:
    the server user must traverse every parent, and pytest resets its own temp root to 0700
    whenever any pytest session starts on the machine.
    """
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip(SKIP_REASON)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, initdb needs the postgres system user (Debian's package makes it)")
    workdir.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="continuity-pg-"))
    data = home / "data"
    sockets = home / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        for path in (home, sockets):
            shutil.chown(path, "postgres")
    port = _free_port()
    log = home / "postgres.log"

    def run(*args: str) -> None:
        done = subprocess.run(
            _as_owner([str(bindir / args[0]), *args[1:]]), capture_output=True, timeout=120, text=True
        )
        if done.returncode != 0:
            text = log.read_text() if log.exists() else ""
            raise AssertionError(f"{args[0]} failed: {done.stdout}{done.stderr}\n{text[-4000:]}")

    run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            timeout=60,
        )
        if log.exists():
            shutil.copy(log, workdir / "postgres.log")
        shutil.rmtree(home, ignore_errors=True)
