"""Chaos testing: a seeded fault schedule against a real local cluster, judged by a pure checker.

``python -m bench.chaos`` (``make chaos``) runs it; see ``run.py``. ``checker.py`` and ``schedule.py``
are pure and unit-tested in ``tests/unit/chaos``.
"""
