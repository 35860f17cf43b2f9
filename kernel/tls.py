"""TLS termination for a daemon's client port: ``trio.SSLListener`` over its TCP listeners.

The certificate chain and key are PEM files named by ``tls_cert_file`` and ``tls_key_file``; the
context is built once at start (a bad file is a ConfigError naming it, before anything listens)
with the ``ssl`` module's server defaults (TLS 1.2 or later). The handshake runs inside the first
read of a connection, so ``header_timeout_s`` bounds a client that never finishes it.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

import trio

from kernel.config import ConfigError


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server-side context with the certificate chain and key; ConfigError if they do not load."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls_cert_file={cert_file!r} / tls_key_file={key_file!r} cannot be loaded: {exc}"
                          ) from None
    context.set_alpn_protocols(["http/1.1"])
    return context


def wrap_listeners(listeners: Sequence[trio.SocketListener], context: ssl.SSLContext | None
                   ) -> list[trio.abc.Listener[trio.abc.Stream]]:
    """``listeners`` as they are, or each wrapped in TLS when there is a ``context``."""
    if context is None:
        return list(listeners)
    return [trio.SSLListener(listener, context, https_compatible=True) for listener in listeners]


def optional_server_context(cert_file: str | None, key_file: str | None) -> ssl.SSLContext | None:
    """A daemon's client-port TLS context: None without both files, else ``server_context``."""
    if cert_file is None or key_file is None:
        return None
    return server_context(cert_file, key_file)
