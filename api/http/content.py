"""Content routes (admin key): what is mis-modelled in the served content, with fixes."""

from __future__ import annotations

from litestar import Controller
from litestar.datastructures import State

from api.http.auth import requires_admin
from api.http.common import loaded_snapshot, runtime_of
from api.http.handlers import get
from api.http.schemas import ContentIssueInfo, ContentIssueList
from content.segments import unknown_segment_issues

__all__ = ["ContentController"]


class ContentController(Controller):
    """Content issues (admin key)."""

    path = "/v1"
    guards = [requires_admin]
    tags = ["admin"]

    @get("/content/issues", summary="Mis-modelled experiences and audiences, with fixes")
    async def content_issues(self, state: State) -> ContentIssueList:
        runtime = runtime_of(state)
        snapshot = loaded_snapshot(runtime)
        model = runtime.model.current
        segment_issues = unknown_segment_issues(snapshot, model.segments if model else ())
        return ContentIssueList(
            content_version=snapshot.version,
            issues=[
                ContentIssueInfo(
                    entry_id=i.entry_id, content_type=i.content_type, problem=i.problem, fix=i.fix
                )
                for i in (*snapshot.issues, *segment_issues)
            ],
        )
