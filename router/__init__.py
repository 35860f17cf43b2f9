"""Continuity router daemon: reads the gossip cluster map and pins every request to the right frontend.

``router.decide`` is the pure routing decision (DESIGN section 4); ``router.server`` the one-port
h11 front door (WebSocket byte pipes, pooled HTTP forwarding, /health /metrics /cluster);
``python -m router`` runs it.
"""
