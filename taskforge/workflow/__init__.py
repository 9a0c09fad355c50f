"""Workflows (chain, group, chord): sent once, advanced by workers, followed by handles.

- :mod:`taskforge.workflow.client`: the producer side: send a workflow, read, wait, cancel.
- :mod:`taskforge.workflow.graph`: a workflow's shape compiled into nodes. Pure: no Redis.
- :mod:`taskforge.workflow.ops`: a workflow's keys and operations in Redis.
- :mod:`taskforge.workflow.advance`: the worker side: advance workflows after members finish.

The shapes themselves (``chain``, ``group``, ``chord``) are in :mod:`taskforge.canvas`.
The package re-exports the producer side, as ``taskforge.workflow`` did when it was one module,
on first use (PEP 562): a worker imports ``advance`` and never loads the producer side.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from taskforge.workflow.client import (
        MAX_WORKFLOW_MEMBERS,
        WORKFLOW_EVENTS,
        WorkflowClient,
        WorkflowHandle,
        WorkflowInfo,
        WorkflowMember,
        WorkflowStatus,
        render_tree,
    )
else:

    def __getattr__(name: str) -> _typing.Any:
        if name not in __all__:
            raise AttributeError(f"module 'taskforge.workflow' has no attribute {name!r}")
        return getattr(_importlib.import_module("taskforge.workflow.client"), name)


__all__ = [
    "MAX_WORKFLOW_MEMBERS",
    "WORKFLOW_EVENTS",
    "WorkflowClient",
    "WorkflowHandle",
    "WorkflowInfo",
    "WorkflowMember",
    "WorkflowStatus",
    "render_tree",
]
