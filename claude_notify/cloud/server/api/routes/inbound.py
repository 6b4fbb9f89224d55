"""Inbound webhooks: Telegram, Discord and Feishu call these for the operator's bot and apps,
never users.

* ``POST /v1/telegram/webhook``: on when ``TELEGRAM_WEBHOOK_SECRET`` is set; accepted only with
  the bot's ``X-Telegram-Bot-Api-Secret-Token`` (compared in constant time). ``/start CODE``
  links a chat (:mod:`claude_notify.cloud.server.relay.link`); replies, ``/run`` and button
  presses are the command relay's (:mod:`claude_notify.cloud.server.relay.telegram`). Answered
  2xx for anything accepted, so Telegram never retries an update we chose to ignore.

* ``POST /v1/discord/interactions``: on when ``DISCORD_PUBLIC_KEY`` is set. Ed25519-verified
  (401 otherwise, before anything else is read); answered in the response, ephemeral. A press
  on a permission request's card (:mod:`claude_notify.cloud.server.relay.discord_approvals`)
  is answered by updating that card.
* ``POST /v1/feishu/events``: on when ``FEISHU_VERIFICATION_TOKEN`` is set. Decrypted and
  signature-checked with ``FEISHU_ENCRYPT_KEY`` when the app has one, token-checked always;
  answered 200 at once; the one-line answer is written into the chat by the app (with
  ``FEISHU_APP_ID`` and ``FEISHU_APP_SECRET``) after the response, else posted through the
  owner's Feishu channel. A press on a permission request's card (``card.action.trigger``,
  :mod:`claude_notify.cloud.server.relay.feishu_approvals`) is answered in the response: a
  toast, and the card updated.

* ``POST /v1/slack/commands``: on when ``SLACK_SIGNING_SECRET`` is set. The slash command's
  ``v0`` HMAC and timestamp checked (401 otherwise, before the form is read); answered in the
  response, ephemeral. ``POST /v1/slack/interactions`` (the app's Interactivity URL): button
  presses, checked the same way, answered through the press's ``response_url``.

The Discord, Feishu and Slack commands and their rules are in
:mod:`claude_notify.cloud.server.relay.chat`.
"""

from __future__ import annotations

import hmac
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, Request, Response
from starlette.concurrency import run_in_threadpool

from claude_notify.cloud.server.api import jsonguard
from claude_notify.cloud.server.api.deps import RuntimeDep
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.relay import (
    approvals,
    chat,
    discord,
    discord_approvals,
    feishu,
    feishu_approvals,
    link,
    slack,
    slack_actions,
    telegram,
)
from claude_notify.cloud.server.relay.state import relay_of
from claude_notify.cloud.server.runtime import Runtime

router = APIRouter(tags=["relay"])


@router.post("/v1/telegram/webhook", include_in_schema=False)
async def telegram_webhook(
    request: Request,
    runtime: RuntimeDep,
    secret: Annotated[str | None, Header(alias="X-Telegram-Bot-Api-Secret-Token")] = None,
) -> dict[str, bool]:
    expected = runtime.settings.telegram_webhook_secret
    if not expected:
        raise ApiError(404, "the Telegram webhook is not enabled on this server")
    if secret is None or not hmac.compare_digest(secret.encode(), expected.encode()):
        runtime.metrics.signature_failures.labels("telegram").inc()
        raise ApiError(403, "wrong or missing X-Telegram-Bot-Api-Secret-Token")
    try:
        update = jsonguard.loads(await request.body())
    except ValueError as exc:
        raise ApiError(400, f"the update: {exc}") from None
    found = link.start_command(update)
    if found is not None:
        await run_in_threadpool(link.link_telegram, runtime, *found)
    else:  # replies, /run and buttons: the command relay
        await telegram.on_update(request.app.state, runtime, update)
    return {"ok": True}


@router.post("/v1/discord/interactions", include_in_schema=False)
async def discord_interactions(
    request: Request,
    runtime: RuntimeDep,
    background: BackgroundTasks,
    signature: Annotated[str | None, Header(alias="X-Signature-Ed25519")] = None,
    timestamp: Annotated[str | None, Header(alias="X-Signature-Timestamp")] = None,
) -> dict[str, Any]:
    key = runtime.settings.discord_public_key
    if not key:
        raise ApiError(404, "Discord interactions are not enabled on this server")
    raw = await request.body()
    if not discord.verified(key, signature, timestamp, raw):
        runtime.metrics.signature_failures.labels("discord").inc()
        raise ApiError(401, "invalid request signature")
    try:
        interaction = jsonguard.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"the interaction: {exc}") from None
    if not isinstance(interaction, dict):
        raise ApiError(400, "the interaction is not a JSON object")
    if interaction.get("type") != discord.PING and not await run_in_threadpool(
            chat.first_delivery, runtime.sessions, "discord", str(interaction.get("id") or "")):
        return discord.message("This interaction was already handled.")
    if discord_approvals.is_press(interaction):  # a permission request's button
        answer, pressed = await run_in_threadpool(discord_approvals.press, runtime, interaction)
        _after_press(request, runtime, background, pressed.wake, pressed.edit)
        return answer
    answer = await run_in_threadpool(
        discord.answer, runtime, relay_of(request.app.state), interaction)
    return answer


def _after_press(request: Request, runtime: Runtime, background: BackgroundTasks,
                 wake: tuple[uuid.UUID, str] | None, edit: uuid.UUID | None) -> None:
    """A permission request answered from a chat: its agent is woken now (the answer reaches
    the hook before the chat's response is sent); its other cards are edited after."""
    if wake is not None:
        relay_of(request.app.state).hub.wake(wake)
    if edit is not None:
        background.add_task(approvals.edit_cards, runtime, edit)


async def _slack_body(request: Request, runtime: Runtime, signature: str | None,
                      timestamp: str | None, what: str) -> bytes:
    """The raw body of a request the operator's Slack app signed (``v0``, five minutes)."""
    secret = runtime.settings.slack_signing_secret
    if not secret:
        raise ApiError(404, f"Slack {what} are not enabled on this server")
    raw = await request.body()
    if not slack.verified(secret, signature, timestamp, raw):
        runtime.metrics.signature_failures.labels("slack").inc()
        raise ApiError(401, "invalid request signature")
    return raw


@router.post("/v1/slack/commands", include_in_schema=False)
async def slack_commands(
    request: Request,
    runtime: RuntimeDep,
    signature: Annotated[str | None, Header(alias="X-Slack-Signature")] = None,
    timestamp: Annotated[str | None, Header(alias="X-Slack-Request-Timestamp")] = None,
) -> dict[str, Any]:
    raw = await _slack_body(request, runtime, signature, timestamp, "commands")
    fields = slack.form(raw)
    if not await run_in_threadpool(chat.first_delivery, runtime.sessions, "slack",
                                   fields.get("trigger_id", "")):
        return slack.message("This command was already handled.")
    answer: dict[str, Any] = await run_in_threadpool(
        slack.answer, runtime, relay_of(request.app.state), fields)
    return answer


@router.post("/v1/slack/interactions", include_in_schema=False)
async def slack_interactions(
    request: Request,
    runtime: RuntimeDep,
    background: BackgroundTasks,
    signature: Annotated[str | None, Header(alias="X-Slack-Signature")] = None,
    timestamp: Annotated[str | None, Header(alias="X-Slack-Request-Timestamp")] = None,
) -> Response:
    """A press on a notification's button: checked like a command, answered through the
    press's ``response_url`` (:mod:`claude_notify.cloud.server.relay.slack_actions`)."""
    raw = await _slack_body(request, runtime, signature, timestamp, "interactions")
    press = slack_actions.parse(raw)
    if press is None:  # another kind of interaction: nothing of ours to do
        return Response(status_code=200)
    if not await run_in_threadpool(chat.first_delivery, runtime.sessions, "slack",
                                   f"press:{press.trigger_id}" if press.trigger_id else ""):
        answered = slack_actions.Answered("This press was already handled.")
    else:
        relay = relay_of(request.app.state)
        answered = await run_in_threadpool(slack_actions.handle, runtime, relay, press)
        if answered.woken is not None:
            relay.hub.wake(answered.woken)
        if answered.edited is not None:  # a permission request: its Telegram cards say so
            background.add_task(approvals.edit_cards, runtime, answered.edited)
    background.add_task(slack_actions.respond, runtime.settings, press, answered)
    return Response(status_code=200)


@router.post("/v1/feishu/events", include_in_schema=False)
async def feishu_events(request: Request, runtime: RuntimeDep,
                        background: BackgroundTasks) -> dict[str, Any]:
    settings = runtime.settings
    if not settings.feishu_verification_token:
        raise ApiError(404, "Feishu events are not enabled on this server")
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        body = feishu.open_envelope(await request.body(), headers,
                                    token=settings.feishu_verification_token,
                                    encrypt_key=settings.feishu_encrypt_key)
    except feishu.CallbackRejected as rejected:
        if rejected.status in (401, 403):  # signature, timestamp or token (not a bad body)
            runtime.metrics.signature_failures.labels("feishu").inc()
        raise ApiError(rejected.status, rejected.message) from None
    if body.get("type") == "url_verification":
        return {"challenge": str(body.get("challenge", ""))}
    if (pressed_card := feishu_approvals.incoming(body)) is not None:
        if not settings.feishu_encrypt_key:  # the presser is not proven: not counted
            return feishu_approvals.toast(feishu_approvals.UNSIGNED, "error")
        if not await run_in_threadpool(chat.first_delivery, runtime.sessions, "feishu",
                                       pressed_card.event_id):
            return feishu_approvals.toast("This press was already handled.")
        reply, pressed = await run_in_threadpool(feishu_approvals.press, runtime, pressed_card)
        _after_press(request, runtime, background, pressed.wake, pressed.edit)
        return reply
    message = feishu.incoming(body)
    if message is None or not await run_in_threadpool(
            chat.first_delivery, runtime.sessions, "feishu", message.event_id):
        return {}
    answer = await run_in_threadpool(feishu.handle, runtime, relay_of(request.app.state),
                                     message)
    if answer is None:
        return {}
    if feishu.AppBot.configured(settings) and message.chat_id:
        if answer.channel_id is not None or not message.group:  # no answers to strangers in groups
            background.add_task(_app_bot(request).say, message.chat_id, answer.text)
    else:
        await run_in_threadpool(chat.post, runtime, answer)
    return {}


def _app_bot(request: Request) -> feishu.AppBot:
    """This app's Feishu app bot (made on first use: it caches the tenant token)."""
    state = request.app.state
    bot = getattr(state, "feishu_app_bot", None)
    if not isinstance(bot, feishu.AppBot):
        bot = state.feishu_app_bot = feishu.AppBot(request.app.state.runtime.settings)
    return bot
