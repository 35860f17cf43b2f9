"""What the router's admin, page and witness surfaces read from the running router.

``router.server.Router`` owns these; ``router.admin``, ``router.static`` and ``router.witness`` are
handed the router and annotate against ``RouterParts`` instead of importing ``Router`` (which imports
them): the surfaces depend on the state they read, not on the server that serves them.
"""

from __future__ import annotations

from typing import Protocol

from router.cluster import ClusterMap
from router.config import RouterConfig
from router.metrics import RouterMetrics
from router.pool import Pools
from router.tunnel import Tunnels


class RouterParts(Protocol):
    """The router's configuration, cluster map, metrics, keep-alive pools and dev-mode tunnel hook."""

    @property
    def config(self) -> RouterConfig: ...

    @property
    def cluster(self) -> ClusterMap: ...

    @property
    def metrics(self) -> RouterMetrics: ...

    @property
    def pools(self) -> Pools: ...

    @property
    def tunnels(self) -> Tunnels: ...
