"""TLS termination: ably-js with ``tls: true`` against a router (the edge, in front of a cluster)
and a standalone frontend, each serving a certificate from a CA this test generates (trustme);
Node trusts that CA through NODE_EXTRA_CA_CERTS. A client that does not trust it fails the
handshake and the daemon keeps serving."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trustme

from tests.interop._harness import API_KEY, node_script, run_frontend
from tests.support.cluster import run_cluster
from tests.support.procs import API_KEY as CLUSTER_KEY

pytestmark = pytest.mark.interop


def _ca_files(tmp_path: Path) -> tuple[trustme.CA, dict[str, str]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    for i, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(paths["cert"]), append=i > 0)
    return ca, {k: str(v) for k, v in paths.items()}


async def _ably_js_over_tls(tmp_path: Path, port: int, ca_file: str, key: str = API_KEY) -> None:
    config = {"key": key, "port": port, "host": "127.0.0.1", "channel": "tls:chat", "binary": True}
    async with node_script(tmp_path, "tls.mjs", config, env={"NODE_EXTRA_CA_CERTS": ca_file}) as script:
        result = await script.expect("result")
    assert result["received"] == ["over tls"]
    assert result["transport"] == "web_socket"
    assert result["subConnectionId"] and result["pubConnectionId"]


async def _refused_handshake(port: int) -> None:
    """A client that does not trust the CA fails the handshake (no plaintext fallback)."""
    stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=ssl.create_default_context())
    with pytest.raises(trio.BrokenResourceError):
        await stream.do_handshake()
    await trio.aclose_forcefully(stream)


async def test_ably_js_tls_through_a_router(tmp_path: Path) -> None:
    ca, files = _ca_files(tmp_path)
    tls = {"tls_cert_file": files["cert"], "tls_key_file": files["key"]}
    async with run_cluster(tmp_path / "cluster", frontends=(("fe-a1", "a"), ("fe-b1", "b")),
                           router_overrides=tls) as cluster:
        port = int(cluster.router_url().rsplit(":", 1)[1])
        with trio.fail_after(60):
            await _refused_handshake(port)
            await _ably_js_over_tls(tmp_path, port, files["ca"], key=CLUSTER_KEY)
            # plain HTTP with the test CA: /livez over https answers
            context = ssl.create_default_context()
            ca.configure_trust(context)
            stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=context)
            async with stream:
                await stream.send_all(b"GET /livez HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
                head = await stream.receive_some(4096)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_ably_js_tls_to_a_standalone_frontend(tmp_path: Path) -> None:
    _, files = _ca_files(tmp_path)
    tls = {"tls_cert_file": files["cert"], "tls_key_file": files["key"]}
    async with run_frontend(tmp_path, admin_port=0, **tls) as fe:
        with trio.fail_after(60):
            await _ably_js_over_tls(tmp_path, fe.port, files["ca"])
