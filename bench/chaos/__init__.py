"""Chaos testing: a seeded fault schedule against a real local cluster, judged by a pure checker.

``python -m bench.chaos`` (``make chaos``) runs it; see ``run.py`` (the run), ``config.py`` (the
cluster, the clients, the fault targets) and ``driver.py`` (applying the faults). ``checker.py`` and
``schedule.py`` are pure and unit-tested in ``tests/unit/chaos``.
"""
