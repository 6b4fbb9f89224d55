"""What a Telegram task notification offers besides its link: "Run again", "Show log", and the
reply token in the link.

A button carries ``run:`` or ``log:`` and the notification's id (38 bytes, within Telegram's 64):
an opaque handle, never the command, so a press can only ever mean "that task's command, for
that task's session", looked up again on the server. "Run again" is offered only where it can
work: a shell task (not a Claude Code session, where a prompt is a reply) whose session the
account may command. Buttons answer only the owner's own presses, so a group chat gets them too;
the reply token works for whoever holds it, so it goes only to a chat the owner alone reads
(:func:`~claude_notify.cloud.server.relay.reply_tokens.private_to_owner`).
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from sqlalchemy.orm import Session

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.channels.base import Actions
from claude_notify.cloud.server.db.models import Channel, Delivery, Task, User
from claude_notify.cloud.server.relay import reply_tokens
from claude_notify.cloud.server.relay.queue import target_of

RELAY_CHANNELS: Final = frozenset({"telegram", "webpush", "slack"})
"""The channels whose notifications carry buttons (and, in a private chat, a reply token); a
Web Push notification only learns whether "Run again" is offered (its click opens the task's
page, whose form runs it)."""
RUN: Final = "run"
LOG: Final = "log"


def actions_for(session: Session, row: Delivery, channel: Channel, event: dict[str, Any],
                *, reply_token_ttl_s: float) -> Actions | None:
    """The buttons and reply token (valid ``reply_token_ttl_s``, the settings'
    ``relay_reply_token_ttl_s``) for an event notification; ``None`` where none apply."""
    if channel.type not in RELAY_CHANNELS or row.task_id is None:
        return None
    task = session.get(Task, row.task_id)
    if task is None:
        return None
    target = target_of(session, row)
    user = session.get(User, row.user_id) if row.user_id is not None else None
    # Only on a channel of the machine's owner: in a team, a shared channel's other readers
    # must not get a way to run anything on a teammate's machine.
    replyable = target is not None and user is not None and channel.user_id == user.id and (
        auth.person_plan(session, user.id) == "pro")
    token = None
    if target is not None and replyable and reply_tokens.private_to_owner(channel.type,
                                                                           channel.config):
        token = reply_tokens.issue(session, row, target, ttl_s=reply_token_ttl_s)
    shell = event.get("source") != "claude-code" and bool(task.cmd.strip())
    return Actions(run_again=f"{RUN}:{row.id.hex}" if replyable and shell else None,
                   show_log=f"{LOG}:{row.id.hex}", reply_token=token)


def parse(data: object) -> tuple[str, uuid.UUID] | None:
    """``(action, notification id)`` of a button's payload, else ``None``."""
    if not isinstance(data, str) or len(data) > 64:
        return None
    action, _, ident = data.partition(":")
    if action not in (RUN, LOG) or len(ident) != 32:
        return None
    try:
        return action, uuid.UUID(hex=ident)
    except ValueError:
        return None
