"""Confirming chat and SMS recipients: nothing is sent to one that has not been confirmed.

* **Telegram**: the user asks for a one-time code (``POST /v1/channels/{id}/link``) and sends
  ``/start CODE`` to the operator's bot (the ``t.me`` link does it in one tap). Telegram calls
  ``POST /v1/telegram/webhook`` (:mod:`~claude_notify.cloud.server.api.routes.inbound`) with
  the update, and the channel records the chat id and the Telegram user id of the sender
  (:mod:`claude_notify.cloud.server.relay.link`). The chat id is never taken from the user.
* **SMS**: a short code is texted to the number; the owner enters it with
  ``POST /v1/channels/{id}/verify`` like an e-mail code.

* **Discord and Feishu replies**: their webhook URLs need no confirmation (they are secrets the
  owner got from the group itself, pinned to the providers' hosts), but taking commands from a
  chat does: the same ``POST /v1/channels/{id}/link`` code, sent as ``/link code:CODE`` to the
  operator's Discord application or ``/link CODE`` to its Feishu app bot, records the Discord
  user id or Feishu ``open_id`` of the sender (see :mod:`claude_notify.cloud.server.relay.chat`).

Only hashes of codes are stored.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from claude_notify.cloud.server.api.deps import ChannelWriter, RuntimeDep, SessionDep
from claude_notify.cloud.server.channels import manage

router = APIRouter(tags=["channels"])


class LinkCode(BaseModel):
    code: str
    command: str
    """What to send to the bot."""
    url: str | None
    """``https://t.me/<bot>?start=CODE``, when the operator named the bot."""
    expires_at: datetime


@router.post(
    "/v1/channels/{channel_id}/link", status_code=201,
    summary="A code to link a Telegram chat, or the Discord or Feishu account allowed to reply",
)
def link_telegram(
    channel_id: uuid.UUID, caller: ChannelWriter, session: SessionDep, runtime: RuntimeDep
) -> LinkCode:
    made = manage.link_code(session, runtime, manage.owned(session, caller, channel_id))
    return LinkCode(code=made.code, command=made.command, url=made.url,
                    expires_at=made.expires_at)
