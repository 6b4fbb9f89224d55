"""Custom message templates (pro): set per channel, checked when saved, previewed per dialect.

A template that does not parse, names an unknown field, uses anything outside the sandbox's
allow-list or fails on a sample event is refused here with the reason, so a broken template is
found when it is written, never when a task ends. The rules are in
:mod:`claude_notify.cloud.server.channels.manage`, shared with the web app.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from claude_notify.cloud.server.api.deps import ChannelWriter, SessionDep
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.api.schemas import StrictBody
from claude_notify.cloud.server.channels import manage, templates

router = APIRouter(tags=["channels"])


class TemplateIn(StrictBody):
    template: str = Field(min_length=1, max_length=templates.MAX_TEMPLATE_CHARS)


class TemplateOut(BaseModel):
    template: str
    previews: dict[str, str]
    """The template rendered with a sample event, in every dialect."""


@router.post("/v1/templates/preview", summary="Check a template and render it with a sample")
def preview(body: TemplateIn, caller: ChannelWriter) -> TemplateOut:
    return TemplateOut(template=body.template,
                       previews=manage.previews(manage.compiled(body.template)))


@router.put("/v1/channels/{channel_id}/template", summary="Set a channel's custom template")
def set_template(
    channel_id: uuid.UUID, body: TemplateIn, caller: ChannelWriter, session: SessionDep
) -> TemplateOut:
    if caller.plan != "pro":  # before the lookup, as before: a free account learns nothing
        raise ApiError(403, "custom templates are a pro feature")
    channel = manage.owned(session, caller, channel_id)
    saved = manage.set_template(session, caller.plan, channel, body.template)
    return TemplateOut(template=saved.source, previews=manage.previews(saved))


@router.delete(
    "/v1/channels/{channel_id}/template", status_code=204, summary="Back to the default template"
)
def clear_template(channel_id: uuid.UUID, caller: ChannelWriter, session: SessionDep) -> Response:
    manage.clear_template(session, manage.owned(session, caller, channel_id))
    return Response(status_code=204)
