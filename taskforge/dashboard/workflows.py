"""The dashboard's workflows page: a workflow's tree with each member's status, and its cancel."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from taskforge.dashboard.pages import dash
from taskforge.dashboard.state import back
from taskforge.errors import WorkflowError, WorkflowNotFoundError
from taskforge.workflow import WorkflowInfo, WorkflowMember, WorkflowStatus
from taskforge.workflow.graph import check_workflow_id


async def workflow_search(request: Request) -> Response:
    """``?id=`` goes to that workflow's page; an empty search shows the search form."""
    workflow_id = request.query_params.get("id", "").strip()
    if workflow_id:
        return back(request, f"/workflows/{workflow_id}")
    return _search(request, "", 200)


async def workflow(request: Request) -> Response:
    """One workflow: its status, the failed member and its error, its tree of members."""
    d = dash(request)
    workflow_id = request.path_params["wid"]
    try:
        info = await d.admin.workflow(check_workflow_id(workflow_id))
    except (WorkflowError, WorkflowNotFoundError):
        # An id no workflow can have is as unknown as one that expired.
        return _search(request, workflow_id, 404)
    return d.render(request, "workflow.html", {
        "page": "workflows", "w": info, "tree": tree_view(info),
        "can_cancel": info.status is WorkflowStatus.RUNNING,
    })  # fmt: skip


async def workflow_json(request: Request) -> Response:
    """A workflow's status, failure and each member's status, or 404: what its page re-reads
    when its stream opens and on each of the workflow's own events."""
    try:
        info = await dash(request).admin.workflow(check_workflow_id(request.path_params["wid"]))
    except (WorkflowError, WorkflowNotFoundError):
        return JSONResponse({"status": None}, 404)
    return JSONResponse(workflow_state(info))


def workflow_state(info: WorkflowInfo) -> dict[str, Any]:
    """What the live workflow page redraws: status, failed member, error, members' statuses."""
    return {
        "id": info.id,
        "status": info.status.value,
        "failed_member": info.failed_member,
        "error": info.error,
        "members": [{"job_id": m.job_id, "status": m.status, "error": m.error}
                    for m in info.members],
    }  # fmt: skip


def _search(request: Request, missing: str, status_code: int) -> Response:
    context = {"page": "workflows", "missing": missing}
    return dash(request).render(request, "workflow_search.html", context, status_code)


def tree_view(info: WorkflowInfo) -> dict[str, Any]:
    """The workflow's tree as nested nodes the template draws: ``kind``, ``label`` (the role
    in its parent: ``header``, ``callback``, ``on_success``, ``on_failure``), ``member`` for a
    call, ``children`` for a shape."""
    members = {m.node: m for m in info.members}
    return _node(info.tree, members, "")


def _node(tree: dict[str, Any], members: dict[int, WorkflowMember], label: str) -> dict[str, Any]:
    kind = tree["type"]
    children: list[tuple[str, dict[str, Any]]] = []
    if kind == "chain":
        children = [("", t) for t in tree["steps"]]
    elif kind == "group":
        children = [("", t) for t in tree["members"]]
    elif kind == "chord":
        children = [("header", tree["header"]), ("callback", tree["body"])]
    children += [("on_success", t) for t in tree.get("on_success", [])]
    children += [("on_failure", {"type": "call", "node": n}) for n in tree.get("on_failure", [])]
    return {
        "kind": kind,
        "label": label,
        "member": members.get(tree["node"]) if kind == "call" else None,
        "children": [_node(child, members, lab) for lab, child in children],
    }


async def cancel_workflow(request: Request, form: FormData) -> Response:
    """Cancel a whole workflow: waiting steps never start, running ones are asked to stop."""
    workflow_id = request.path_params["wid"]
    status = await dash(request).admin.workflow_cancel(check_workflow_id(workflow_id))
    return back(request, f"/workflows/{workflow_id}", notice=f"workflow is {status.value}")


__all__ = ["cancel_workflow", "tree_view", "workflow", "workflow_json", "workflow_search",
           "workflow_state"]  # fmt: skip
