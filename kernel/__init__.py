"""The shared kernel: what the frontend, the router and the client SDK all speak.

The Ably wire protocol (``protocol``), error codes (``errors``), connection keys
(``keys``), WebSocket framing (``wsframe``), channel placement (``placement``), the
membership view built from gossip (``membership``) and log setup (``logs``). It imports
neither daemon: ``frontend/``, ``router/`` and the ``continuity`` SDK import it.
"""
