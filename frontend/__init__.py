"""Continuity frontend daemon."""
