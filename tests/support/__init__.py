"""Test support: the tunnel (a TCP fault proxy) and real daemon processes."""
