"""The Ably REST surface of a frontend: publish, history, channel status, tokens (see service.py)."""
