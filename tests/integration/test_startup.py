"""Starting a daemon: a port in use is one clear line, an unsafe config is refused with what to do."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.support.procs import REPO


@pytest.mark.parametrize("daemon", ["frontend", "router"])
def test_port_in_use_is_one_clear_line(daemon: str) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", daemon, "--dev", "--port", str(port), "--log-level", "error"],
            cwd=REPO, capture_output=True, text=True, timeout=30,
        )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [f"continuity-{daemon}: cannot listen on 127.0.0.1:{port}"
                     + lines[0].split(str(port), 1)[1]], done.stderr
    assert "address already in use" in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("daemon", ["frontend", "router"])
def test_the_builtin_secret_is_refused_outside_dev_mode(daemon: str) -> None:
    done = subprocess.run([sys.executable, "-m", daemon, "--port", "0"], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2
    assert "cluster_secret is the built-in development secret: set cluster_secret to a random value" \
        in done.stderr
    assert "Traceback" not in done.stderr
