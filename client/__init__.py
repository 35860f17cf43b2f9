"""Continuity trio client SDK."""
