"""Custom message templates (pro): set per channel, checked when saved, previewed per dialect.

A template that does not parse, names an unknown field, uses anything outside the sandbox's
allow-list or fails on a sample event is refused here with the reason, so a broken template is
found when it is written, never when a task ends.
"""

from __future__ import annotations

import uuid
from typing import Final

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from claude_notify.cloud.server.api.deps import ChannelWriter, SessionDep
from claude_notify.cloud.server.api.errors import ApiError, not_found
from claude_notify.cloud.server.api.schemas import StrictBody
from claude_notify.cloud.server.channels import templates
from claude_notify.cloud.server.channels.markdown import DIALECTS
from claude_notify.cloud.server.db.models import Channel

router = APIRouter(tags=["channels"])

TEMPLATED: Final = {"telegram": "telegram", "discord": "discord", "feishu": "lark_md",
                    "sms": "text", "email": "html"}  # fmt: skip
"""Channel types that render a custom template, and the dialect each renders it to (e-mail also
renders the text part, in the ``text`` dialect)."""


class TemplateIn(StrictBody):
    template: str = Field(min_length=1, max_length=templates.MAX_TEMPLATE_CHARS)


class TemplateOut(BaseModel):
    template: str
    previews: dict[str, str]
    """The template rendered with a sample event, in every dialect."""


def _checked(source: str) -> templates.Template:
    try:
        return templates.compile_template(source)
    except templates.TemplateError as exc:
        raise ApiError(422, f"template: {exc}", code="invalid_template") from None


def _previews(template: templates.Template) -> dict[str, str]:
    return {d: template.render(templates.SAMPLE_FIELDS, d) for d in DIALECTS}


@router.post("/v1/templates/preview", summary="Check a template and render it with a sample")
def preview(body: TemplateIn, caller: ChannelWriter) -> TemplateOut:
    return TemplateOut(template=body.template, previews=_previews(_checked(body.template)))


@router.put("/v1/channels/{channel_id}/template", summary="Set a channel's custom template")
def set_template(
    channel_id: uuid.UUID, body: TemplateIn, caller: ChannelWriter, session: SessionDep
) -> TemplateOut:
    if caller.plan != "pro":
        raise ApiError(403, "custom templates are a pro feature")
    channel = _owned(session, caller.user_id, channel_id)
    if channel.type not in TEMPLATED:
        raise ApiError(409, f"{channel.type} channels do not take a custom template yet")
    compiled = _checked(body.template)
    channel.config = {**channel.config, "template": compiled.source}
    session.commit()
    return TemplateOut(template=compiled.source, previews=_previews(compiled))


@router.delete(
    "/v1/channels/{channel_id}/template", status_code=204, summary="Back to the default template"
)
def clear_template(channel_id: uuid.UUID, caller: ChannelWriter, session: SessionDep) -> Response:
    channel = _owned(session, caller.user_id, channel_id)
    channel.config = {k: v for k, v in channel.config.items() if k != "template"}
    session.commit()
    return Response(status_code=204)


def _owned(session: SessionDep, user_id: uuid.UUID, channel_id: uuid.UUID) -> Channel:
    channel = session.scalar(
        select(Channel).where(Channel.id == channel_id, Channel.user_id == user_id)
    )
    if channel is None:
        raise not_found("channel")
    return channel
