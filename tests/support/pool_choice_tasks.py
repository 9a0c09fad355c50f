"""Tasks that choose their pool:
``taskforge worker tests.support.pool_choice_tasks:app [--pool ...]``.

A separate app from ``tests.support.pool_tasks``, so that app's workers see no per-task choice.
"""

from __future__ import annotations

import os

from taskforge import Taskforge

app = Taskforge()


@app.task(name="choice.in_process", pool="process")
def in_process() -> int:
    """Always in a child process, even on a ``--pool thread`` worker: returns its pid."""
    return os.getpid()


@app.task(name="choice.in_thread", pool="thread")
def in_thread() -> int:
    """Always in a worker thread, even on a ``--pool process`` worker: returns its pid."""
    return os.getpid()


@app.task(name="choice.default")
def default() -> int:
    """Wherever the worker's ``--pool`` says: returns its pid."""
    return os.getpid()
