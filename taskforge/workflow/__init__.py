"""Workflows (chain, group, chord): sent once, advanced by workers, followed by handles.

- :mod:`taskforge.workflow.client`: the producer side: send a workflow, read, wait, cancel.
- :mod:`taskforge.workflow.graph`: a workflow's shape compiled into nodes. Pure: no Redis.
- :mod:`taskforge.workflow.ops`: a workflow's keys and operations in Redis.
- :mod:`taskforge.workflow.advance`: the worker side: advance workflows after members finish.

The shapes themselves (``chain``, ``group``, ``chord``) are in :mod:`taskforge.canvas`.
The package re-exports the producer side, as ``taskforge.workflow`` did when it was one module.
"""

from __future__ import annotations

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
