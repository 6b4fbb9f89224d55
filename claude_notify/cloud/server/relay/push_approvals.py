"""Permission requests pushed to the owner's browsers (Web Push), beside the Telegram cards
(and, from here too, the Slack, Discord and Feishu cards of :mod:`.slack_approvals`,
:mod:`.discord_approvals` and :mod:`.feishu_approvals`).

A browser that turned on notifications (a ``webpush`` channel) gets each new approval as a
notification with **Allow** and **Deny**. The push carries what the card shows — the tool, the
project and machine, the call literally — and the approval's id; the web app's service worker
answers a press through the approval's own page (``/app/approvals/{id}``): it reads the page
with the browser's session, then posts that page's form with its token, so the answer passes the
same checks as a click on the page (owner only, origin, form token, first answer wins). A
browser that is not signed in any more gets the page opened instead.

Pushes are sent at once, not through the outbox: an approval waits minutes at most, as the
Telegram cards (sent the same way) do. A subscription the push service reports gone is removed.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import PurePath
from typing import Any, Final

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from claude_notify.cloud.server.channels.base import SendResult
from claude_notify.cloud.server.channels.text import clean
from claude_notify.cloud.server.db.models import Channel
from claude_notify.cloud.server.relay import approval_kinds as kinds
from claude_notify.cloud.server.relay.models import Approval
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.teams.access import private_to

log = logging.getLogger("claude_notify.server.relay")

BODY_CHARS: Final = 600


def subscribed(session: Session, user_id: uuid.UUID) -> list[Channel]:
    """The owner's browsers with notifications on (each a ``webpush`` channel)."""
    return list(session.scalars(select(Channel).where(
        private_to(user_id), Channel.type == "webpush", Channel.enabled.is_(True))))


def payload(row: Approval) -> dict[str, Any]:
    """What the service worker gets: text only, and the approval's id. A plan's buttons say
    Approve plan / Keep planning (``answers``: each button's answer, title, and what the
    confirmation says); a question has none: a click opens its page, where its options are."""
    where = " · ".join(x for x in (PurePath(row.cwd).name if row.cwd else "",
                                   row.machine_id[:12]) if x)
    display = clean(row.display)
    if len(display) > BODY_CHARS:
        display = display[:BODY_CHARS - 1] + "…"  # a command reads from its start
    said = kinds.words(row)
    shown = {"v": 1, "kind": "approval", "approval": row.id.hex,
             "title": clean(said.title)[:120],
             "body": f"{clean(where)}\n{display}" if where else display}
    if kinds.kind(row) == kinds.PLAN:
        shown["answers"] = [["allow", said.allow, said.allowed], ["deny", said.deny, said.denied]]
    elif kinds.kind(row) == kinds.QUESTION:
        shown["answers"] = []
    return shown


async def push_approval(runtime: Runtime, approval_id: uuid.UUID) -> None:
    """Ask the owner beyond Telegram: push a pending approval to each of their browsers, send
    its card to their linked Slack channels and Discord and Feishu accounts, and mail it to
    their own address (:mod:`.email_approvals`), side by side (one failing does not stop the
    others)."""
    import asyncio

    from claude_notify.cloud.server.relay import (
        discord_approvals,
        email_approvals,
        feishu_approvals,
        slack_approvals,
    )

    done = await asyncio.gather(_push(runtime, approval_id),
                                slack_approvals.post_cards(runtime, approval_id),
                                email_approvals.mail_card(runtime, approval_id),
                                discord_approvals.post_cards(runtime, approval_id),
                                feishu_approvals.post_cards(runtime, approval_id),
                                return_exceptions=True)
    for failed in done:
        if isinstance(failed, Exception):
            log.warning("approval not sent everywhere: %s: %s", type(failed).__name__, failed)


async def _push(runtime: Runtime, approval_id: uuid.UUID) -> None:
    """Push a pending approval to each of its owner's browsers."""
    import httpx
    from starlette.concurrency import run_in_threadpool

    from claude_notify.cloud.server.channels.webpush import WebPushChannel

    def read() -> tuple[bytes, list[tuple[uuid.UUID, dict[str, Any]]]] | None:
        with runtime.sessions() as session:
            row = session.get(Approval, approval_id)
            if row is None or row.state != "pending":
                return None
            found = subscribed(session, row.user_id)
            data = json.dumps(payload(row), ensure_ascii=False, separators=(",", ":")).encode()
            return data, [(c.id, dict(c.config)) for c in found]

    found = await run_in_threadpool(read)
    if found is None or not found[1]:
        return
    data, browsers = found
    gone = []
    async with httpx.AsyncClient() as http:
        channel = WebPushChannel(runtime.settings, http)
        for channel_id, config in browsers:
            request = await channel.sealed(config, data, urgent=True,
                                           topic=f"approval-{approval_id.hex[:22]}")
            if isinstance(request, SendResult):  # refused before any call
                result = request
            else:
                answer = await channel.post(request)
                result = (channel.unreachable(answer) if isinstance(answer, str)
                          else channel.classify(answer))
            if result.remove_channel:
                gone.append(channel_id)
            elif not result.ok:
                log.warning("approval not pushed to a browser: %s", result.detail[:200])

    def forget() -> None:
        with runtime.sessions.begin() as session:
            session.execute(delete(Channel).where(Channel.id.in_(gone)))

    if gone:
        await run_in_threadpool(forget)
