#!/usr/bin/env python3
"""Write ``export <VAR>=<zone>`` for the node this pod runs on, read from the Kubernetes API.

The downward API cannot expose node labels, so the init containers of deploy/k8s run this with
the pod's ServiceAccount (which may `get` nodes) and the node name from ``NODE_NAME``:

    continuity-node-zone /run/continuity/zone.env CONTINUITY_ZONE

The zone is the node's ``topology.kubernetes.io/zone`` label (or the deprecated
``failure-domain.beta.kubernetes.io/zone``), with any character outside [A-Za-z0-9_-] replaced by
``-``. Exits 1 with a message if the node or its label cannot be read. Stdlib only.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import sys
import urllib.request
from pathlib import Path

SA = Path("/var/run/secrets/kubernetes.io/serviceaccount")
LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")


def node_zone(node: str) -> str:
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    request = urllib.request.Request(
        f"https://{host}:{port}/api/v1/nodes/{node}",
        headers={"Authorization": f"Bearer {(SA / 'token').read_text().strip()}"},
    )
    context = ssl.create_default_context(cafile=str(SA / "ca.crt"))
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        labels = json.load(response)["metadata"].get("labels", {})
    for label in LABELS:
        if labels.get(label):
            return re.sub(r"[^A-Za-z0-9_-]", "-", labels[label])[:32]
    raise LookupError(f"node {node} has none of the labels {', '.join(LABELS)}")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    out, var = argv[1], argv[2]
    node = os.environ.get("NODE_NAME")
    if not node:
        print("continuity-node-zone: NODE_NAME is not set (fieldRef spec.nodeName)", file=sys.stderr)
        return 1
    try:
        zone = node_zone(node)
    except (OSError, LookupError, KeyError, ValueError) as exc:
        print(f"continuity-node-zone: cannot read the zone of node {node}: {exc}", file=sys.stderr)
        return 1
    Path(out).write_text(f"export {var}={zone}\n")
    print(f"continuity-node-zone: node {node} is in zone {zone}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
