"""structlog set-up: key-value events, JSON when stderr is not a terminal."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(level: str = "info", node_id: str | None = None) -> None:
    """Key-value events on stderr; with ``node_id``, every line carries it (several daemons' logs
    are often read merged)."""
    stamp: list[structlog.types.Processor] = []
    if node_id is not None:

        def add_node_id(_: object, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
            event.setdefault("node_id", node_id)
            return event

        stamp.append(add_node_id)
    renderer: structlog.types.Processor
    if sys.stderr.isatty():
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            *stamp,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
