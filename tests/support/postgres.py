"""A real PostgreSQL server for tests: initdb into a temp dir, pg_ctl on a free port. Never a mock.

Debian's binaries live in /usr/lib/postgresql/<major>/bin (``make install`` installs the
``postgresql`` package when absent and it may). initdb refuses to run as root, so as root the
server runs as the ``postgres`` system user (the package creates it), via runuser. When no
binaries are found the tests that need the server skip with a loud reason.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
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
    """Start a throwaway server under ``workdir``; yield its DSN; stop it and remove its files."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip(SKIP_REASON)
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "pgdata"
    sockets = workdir / "pgsock"
    sockets.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        shutil.chown(sockets, "postgres")
        os.chmod(workdir, 0o755)
        for parent in workdir.parents:  # the server user must reach its data directory
            if str(parent).startswith(("/tmp", "/work")) and parent != Path("/"):
                os.chmod(parent, os.stat(parent).st_mode | 0o011)
    port = _free_port()
    run = lambda *args: subprocess.run(  # noqa: E731
        _as_owner([str(bindir / args[0]), *args[1:]]), check=True, capture_output=True, timeout=120
    )
    run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    log = workdir / "postgres.log"
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    try:
        run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
    except subprocess.CalledProcessError as exc:
        text = log.read_text() if log.exists() else ""
        raise AssertionError(f"pg_ctl start failed: {exc.stderr!r}\n{text[-4000:]}") from None
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(data, ignore_errors=True)
