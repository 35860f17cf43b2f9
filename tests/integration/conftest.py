"""Integration fixtures (real frontend processes, the tunnel) live in tests.support.fixtures."""

from tests.support.fixtures import frontend, tunnel

__all__ = ["frontend", "tunnel"]
