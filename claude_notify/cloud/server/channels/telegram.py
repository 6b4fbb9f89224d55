"""Telegram through the operator's bot: ``sendMessage`` in HTML mode, a button to the task
(its link carrying the notification's reply token in the fragment) and, where the relay can act
on it, "Run again" and "Show log" buttons (see :mod:`claude_notify.cloud.server.relay.actions`).

The chat id comes from linking (``/start CODE``), never from the user. Errors are read from the
body: 429 waits ``parameters.retry_after``; a group upgraded to a supergroup answers
``migrate_to_chat_id``, the message is sent there and the result carries the new id for the
channel (``channel_update``, applied when the delivery is settled); a bot that was blocked or
removed, or a chat that no longer exists, is permanent and disables the channel.
"""

from __future__ import annotations

import dataclasses
import html
import re
from typing import Any, ClassVar

import httpx

from claude_notify.cloud.server.channels import templates
from claude_notify.cloud.server.channels.base import HttpChannel, Message, Post, SendResult
from claude_notify.cloud.server.channels.text import clean, utf16_len

TEXT_LIMIT = 4096
"""Characters of ``text`` after entity parsing (counted here in UTF-16 units, the stricter)."""
_TAG = re.compile(r"<[^>]*>")
_GONE = ("bot was blocked", "bot was kicked", "user is deactivated", "chat not found",
         "bot is not a member", "have no rights to send", "group chat was deleted")  # fmt: skip


def visible_length(text: str) -> int:
    """How long Telegram considers an HTML ``text``: tags dropped, entities decoded."""
    return utf16_len(html.unescape(_TAG.sub("", text)))


def build_payload(message: Message, *, chat_id: Any, app_url: str | None) -> dict[str, Any]:
    """The ``sendMessage`` body: HTML text within the limit and, for events, a task button."""
    template, fields = templates.body_fields(message, app_url=app_url)
    text = template.render_fitted(fields, "telegram", limit=TEXT_LIMIT, measure=visible_length)
    payload: dict[str, Any] = {
        "chat_id": chat_id,
        "text": text or html.escape(clean(message.subject)) or "claude-notify",
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": True},
    }
    if buttons := _buttons(message, fields.get("link")):
        payload["reply_markup"] = {"inline_keyboard": [buttons]}
    return payload


def _buttons(message: Message, link: str | None) -> list[dict[str, str]]:
    """The task link (with the reply token in its fragment) and the relay's buttons."""
    actions = message.actions
    buttons = []
    if link:
        if actions is not None and actions.reply_token:
            link = f"{link}#reply={actions.reply_token}"
        buttons.append({"text": "Open task", "url": link})
    if actions is not None and actions.run_again:
        buttons.append({"text": "Run again", "callback_data": actions.run_again})
    if actions is not None and actions.show_log:
        buttons.append({"text": "Show log", "callback_data": actions.show_log})
    return buttons


class TelegramChannel(HttpChannel):
    type: ClassVar[str] = "telegram"

    def method_url(self, method: str) -> str:
        base = self.settings.telegram_api_base.rstrip("/")
        return f"{base}/bot{self.settings.telegram_bot_token}/{method}"

    async def send(self, message: Message) -> SendResult:
        """:meth:`HttpChannel.send`, following a group that became a supergroup (at most twice):
        the message goes to the new chat, and the result gives the channel its new id."""
        first = message.config.get("chat_id")
        for _ in range(3):
            result = await super().send(message)
            moved = result.channel_update if not result.ok else None
            if moved is None:
                chat_id = message.config.get("chat_id")
                if chat_id == first:
                    return result
                # The group became a supergroup: the channel keeps the new id from now on.
                return dataclasses.replace(result, channel_update={"chat_id": chat_id})
            message = dataclasses.replace(message, config={**message.config, **moved})
        return SendResult(ok=False, detail="Telegram: chat migrated more than twice")

    async def request(self, message: Message) -> Post | SendResult:
        if not self.settings.telegram_bot_token:
            return SendResult(ok=False, detail="Telegram is not configured on this server")
        chat_id = message.config.get("chat_id")
        if chat_id is None:
            return SendResult(ok=False, detail="no Telegram chat linked: send /start CODE")
        payload = build_payload(message, chat_id=chat_id, app_url=self.settings.dashboard_url)
        return self._method("sendMessage", payload)

    def classify(self, response: httpx.Response) -> SendResult:
        body = _body(response)
        if (new_chat := body.get("migrate_to_chat_id")) is not None:  # send() follows it
            return SendResult(ok=False, detail="Telegram: the chat moved",
                              channel_update={"chat_id": new_chat})
        return _classify(body)

    def unreachable(self, detail: str) -> SendResult:
        return _classify({"ok": False, "error_code": 0, "description": detail})

    async def call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The decoded answer (``{"ok": …}``), or a synthetic one for transport failures."""
        answer = await self.post(self._method(method, payload))
        if isinstance(answer, str):
            return {"ok": False, "error_code": 0, "description": answer}
        return _body(answer)

    def _method(self, method: str, payload: dict[str, Any]) -> Post:
        return Post(self.method_url(method),
                    {"json": payload, "timeout": self.settings.provider_timeout_s})


def _body(response: httpx.Response) -> dict[str, Any]:
    """The answer as a dict with its ``error_code`` and any ``migrate_to_chat_id`` on top."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return {"ok": False, "error_code": response.status_code, "description": "not JSON"}
    body.setdefault("error_code", response.status_code)
    params = body.get("parameters")
    if isinstance(params, dict) and params.get("migrate_to_chat_id") is not None:
        body["migrate_to_chat_id"] = params["migrate_to_chat_id"]
    return body


def _classify(body: dict[str, Any]) -> SendResult:
    if body.get("ok") is True:
        result = body.get("result") or {}
        message_id = result.get("message_id") if isinstance(result, dict) else None
        provider_id = str(message_id) if message_id is not None else None
        return SendResult(ok=True, detail=f"message {provider_id}", provider_id=provider_id)
    code = int(body.get("error_code") or 0)
    reason = clean(str(body.get("description") or "no description"))[:300]
    detail = f"Telegram {code}: {reason}" if code else f"Telegram: {reason}"
    params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    if code == 429 or code == 0 or code >= 500:
        wait = params.get("retry_after") if params else None
        retry_after = float(wait) if isinstance(wait, int | float) else None
        return SendResult(ok=False, retryable=True, detail=detail, retry_after=retry_after)
    gone = code == 403 or any(phrase in reason.lower() for phrase in _GONE)
    return SendResult(ok=False, detail=detail, disable_channel=gone)
