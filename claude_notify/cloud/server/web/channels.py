"""Channels: add one, confirm its recipient (a code, a mailed link, or a chat linked from the
phone by a ``t.me`` link and its QR code), send a test, see its last error, and set when it
fires, its group replies and (pro) its template with a preview in every dialect.

Every rule is :mod:`claude_notify.cloud.server.channels.manage`'s, the API's own; a refusal
shows its message on the page.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from claude_notify.cloud.server import quota
from claude_notify.cloud.server.api.deps import RuntimeDep, SessionDep
from claude_notify.cloud.server.api.errors import ApiError
from claude_notify.cloud.server.channels import catalog, manage, vapid
from claude_notify.cloud.server.channels.markdown import DIALECTS
from claude_notify.cloud.server.channels.templates import MAX_TEMPLATE_CHARS
from claude_notify.cloud.server.db.models import Channel, Delivery
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.cloud.server.teams import access, service
from claude_notify.cloud.server.teams.access import Seat
from claude_notify.cloud.server.web import security
from claude_notify.cloud.server.web.models import WebSession
from claude_notify.cloud.server.web.pages import (
    NotFound,
    WebDep,
    render,
    router,
    seat_of,
    see_other,
)

TARGET: Final = {"email": "address", "sms": "number", "whatsapp": "number", "webhook": "url",
                 "discord": "webhook_url", "feishu": "webhook_url",
                 "slack": "webhook_url", "ntfy": "url", "teams": "webhook_url"}  # fmt: skip
"""The one config value each type's add form asks for (Telegram asks for none: its chat is
linked from the chat itself)."""

TARGET_HINT: Final = {
    "email": "an e-mail address", "sms": "a phone number such as +14155550100",
    "whatsapp": "a WhatsApp number such as +14155550100",
    "webhook": "an https:// URL", "telegram": "nothing: link the chat once it is added",
    "discord": "the channel's webhook URL", "feishu": "the group bot's webhook URL",
    "slack": "an incoming-webhook URL (hooks.slack.com)",
    "ntfy": "a topic's URL, such as https://ntfy.sh/my-topic",
    "teams": "a Teams workflow's webhook URL",
}

Text = Annotated[str, Form(max_length=2048)]
Csrf = Annotated[str, Form(max_length=100)]


@dataclass(frozen=True)
class Kind:
    """A channel type as the add form offers it: usable, or why not."""

    name: str
    hint: str
    refused: str | None


def _kinds(settings: Settings, plan: str) -> list[Kind]:
    kinds = []
    for name in manage.types(settings):
        if name == "webpush":  # added by the browser itself: "Enable notifications"
            continue
        try:
            manage.check_usable(settings, plan, name)
            refused = None
        except ApiError as exc:
            refused = exc.message
        kinds.append(Kind(name, TARGET_HINT.get(name, "its address (a plugin channel)"),
                          refused))
    return kinds


def _target_key(settings: Settings, kind: str) -> str | None:
    """The config value the add form's one field fills: a plugin names it as ``form_field``."""
    if kind in TARGET:
        return TARGET[kind]
    from claude_notify.cloud.server.channels import plugins

    plugin = plugins.enabled(settings.channel_plugins).get(kind)
    field = getattr(plugin, "form_field", None)
    return field if isinstance(field, str) else None


def where(channel: Channel) -> str:
    """Who receives, shown without what would let a reader send to it: a chat webhook's token
    (the URL's last part) and any URL's query are left out."""
    config = channel.config
    if channel.type == "email":
        return str(config.get("address", ""))
    if channel.type in ("sms", "whatsapp"):
        return str(config.get("number", ""))
    if channel.type == "telegram":
        if config.get("chat_id") is None:
            return "no chat linked yet"
        return str(config.get("chat_title") or f"chat {config['chat_id']}")
    if channel.type == "webpush":  # the push service's URL names the browser: its host only
        return f"a browser, through {urlsplit(str(config.get('endpoint', ''))).hostname}"
    if channel.type not in TARGET:  # a plugin's: its config may hold anything
        return f"its {channel.type} destination"
    url = urlsplit(str(config.get(TARGET[channel.type], "")))
    path = url.path
    if channel.type in ("discord", "feishu", "slack"):
        path = path.rstrip("/").rpartition("/")[0] + "/…"
    return f"{url.scheme}://{url.netloc}{path}"


def _last(db: Session, channel: Channel) -> tuple[Delivery | None, Delivery | None]:
    """The channel's last delivery that went out, and its last that failed or was refused."""
    base = select(Delivery).where(Delivery.channel_id == channel.id)
    sent = db.scalar(base.where(Delivery.status == "sent")
                     .order_by(Delivery.created_at.desc()).limit(1))
    failed = db.scalar(base.where(Delivery.reason.is_not(None), Delivery.status != "sent")
                       .order_by(Delivery.created_at.desc()).limit(1))
    return sent, failed


# -- the list, and adding ----------------------------------------------------------------------


@router.get("/channels")
def channels_page(request: Request, web: WebDep, db: SessionDep,
                  runtime: RuntimeDep) -> HTMLResponse:
    return _list_view(request, db, runtime, web)


def _list_view(request: Request, db: Session, runtime: Runtime, web: WebSession, *,
               problem: str = "", code: int = 200, form: dict[str, Any] | None = None,
               ) -> HTMLResponse:
    user = seat_of(db, web)
    rows = list(db.scalars(select(Channel).where(manage.visible(user))
                           .order_by(Channel.created_at, Channel.id)))
    channels = [(c, where(c), *_last(db, c)) for c in rows]
    settings = runtime.settings
    push_key = vapid.public_key(settings.vapid_private_key) if settings.vapid_private_key else ""
    team = len(service.members(db, user.workspace_id)) > 1
    return render(request, "channels.html", code, web=web, user=user, channels=channels,
                  team=team, manages=access.manages(user),
                  kinds=_kinds(settings, user.plan), triggers=catalog.TRIGGERS,
                  push_key=push_key, push_refused=quota.limits(user.plan, "webpush", settings),
                  verified=manage.is_verified, problem=problem,
                  form=form or {"type": "email", "name": "", "target": "", "on": ["finished"],
                                "regex": "", "personal": False})


@router.post("/channels")
def add_channel(request: Request, web: WebDep, db: SessionDep, runtime: RuntimeDep,
                csrf: Csrf = "", type: Annotated[str, Form(max_length=16)] = "",
                name: Annotated[str, Form(max_length=100)] = "", target: Text = "",
                on: Annotated[list[str] | None, Form()] = None,
                regex: Annotated[str, Form(max_length=catalog.MAX_REGEX_CHARS)] = "",
                personal: Annotated[str, Form(max_length=5)] = "",
                ) -> Response:
    """Add a channel, then go to its page, where its recipient is confirmed or linked."""
    security.check_form(request, runtime.settings, web, csrf)
    user = seat_of(db, web)
    key = _target_key(runtime.settings, type)
    config = {key: target.strip()} if key else {}
    try:
        channel = manage.create(db, runtime, who=user, kind=type, name=" ".join(name.split()),
                                config=config, rules_=_rules(on, regex),
                                personal=True if personal == "on" else None)
    except ApiError as exc:
        db.rollback()
        return _list_view(request, db, runtime, web, problem=exc.message, code=exc.status,
                          form={"type": type, "name": name, "target": target,
                                "on": on or [], "regex": regex, "personal": personal == "on"})
    return see_other(f"/app/channels/{channel.id}")


def _rules(on: list[str] | None, regex: str) -> dict[str, Any]:
    return {"on": list(on or ()), "regex": regex.strip() or None}


# -- one channel -------------------------------------------------------------------------------


@router.get("/channels/{channel_id}")
def channel_page(request: Request, channel_id: uuid.UUID, web: WebDep, db: SessionDep,
                 runtime: RuntimeDep) -> HTMLResponse:
    return _channel_view(request, db, runtime, web, channel_id)


def _channel_view(request: Request, db: Session, runtime: Runtime, web: WebSession,
                  channel_id: uuid.UUID, *, code: int = 200, problem: str = "", notice: str = "",
                  link: manage.LinkCode | None = None, secret: str = "",
                  template: str | None = None, previews: dict[str, str] | None = None,
                  ) -> HTMLResponse:
    user = seat_of(db, web)
    channel = _mine(db, user, channel_id)
    sent, failed = _last(db, channel)
    qr = _qr(link.url) if link and link.url else ""
    source = template if template is not None else str(channel.config.get("template", ""))
    return render(
        request, "channel.html", code, web=web, user=user, channel=channel,
        where=where(channel), verified=manage.is_verified(channel), sent=sent, failed=failed,
        triggers=catalog.TRIGGERS, problem=problem, notice=notice, link=link, qr=qr,
        secret=secret, linkable=channel.type in ("telegram", "discord", "feishu", "slack"),
        group_replies=channel.type in manage.GROUP_REPLIES,
        templated=channel.type in manage.TEMPLATED, pro=user.plan == "pro",
        template=source, previews=previews, dialects=DIALECTS,
        max_template=MAX_TEMPLATE_CHARS,
        plan_refusal=quota.limits(user.plan, channel.type, runtime.settings))


def _mine(db: Session, user: Seat, channel_id: uuid.UUID, *, change: bool = False) -> Channel:
    try:
        return manage.owned(db, user, channel_id, change=change)
    except ApiError as exc:
        if exc.status == 403:
            raise security.Refused(exc.message) from None
        raise NotFound from None


def _qr(url: str) -> str:
    """A ``data:`` URI of the link's QR code as SVG (the page's CSP allows ``data:`` images;
    an SVG shown as an image runs nothing)."""
    import segno  # only this page needs it

    return str(segno.make(url, error="m").svg_data_uri(scale=5, border=2))


def _act(request: Request, db: Session, runtime: Runtime, web: WebSession, csrf: str,
         channel_id: uuid.UUID) -> tuple[Seat, Channel]:
    security.check_form(request, runtime.settings, web, csrf)
    user = seat_of(db, web)
    return user, _mine(db, user, channel_id, change=True)


def _refused(request: Request, db: Session, runtime: Runtime, web: WebSession,
             channel_id: uuid.UUID, exc: ApiError, **context: Any) -> HTMLResponse:
    db.rollback()
    return _channel_view(request, db, runtime, web, channel_id, code=exc.status,
                         problem=exc.message, **context)


@router.post("/channels/{channel_id}/settings")
def save_settings(request: Request, channel_id: uuid.UUID, web: WebDep, db: SessionDep,
                  runtime: RuntimeDep, csrf: Csrf = "",
                  name: Annotated[str, Form(max_length=100)] = "",
                  on: Annotated[list[str] | None, Form()] = None,
                  regex: Annotated[str, Form(max_length=catalog.MAX_REGEX_CHARS)] = "",
                  enabled: Annotated[str, Form(max_length=5)] = "") -> Response:
    """Name, when it fires, and on or off."""
    user, channel = _act(request, db, runtime, web, csrf, channel_id)
    try:
        manage.update(db, runtime, channel, name=" ".join(name.split()),
                      rules_=_rules(on, regex), enabled=enabled == "on", who=user)
    except ApiError as exc:
        return _refused(request, db, runtime, web, channel_id, exc)
    return see_other(f"/app/channels/{channel_id}")


@router.post("/channels/{channel_id}/group-replies")
def group_replies(request: Request, channel_id: uuid.UUID, web: WebDep, db: SessionDep,
                  runtime: RuntimeDep, csrf: Csrf = "",
                  allow: Annotated[str, Form(max_length=5)] = "") -> Response:
    _user, channel = _act(request, db, runtime, web, csrf, channel_id)
    try:
        manage.set_group_replies(db, runtime, channel, allow == "on")
    except ApiError as exc:
        return _refused(request, db, runtime, web, channel_id, exc)
    return see_other(f"/app/channels/{channel_id}")


@router.post("/channels/{channel_id}/test")
def send_test(request: Request, channel_id: uuid.UUID, web: WebDep, db: SessionDep,
              runtime: RuntimeDep, csrf: Csrf = "") -> Response:
    user, channel = _act(request, db, runtime, web, csrf, channel_id)
    try:
        manage.send_test(db, runtime, user.plan, channel)
    except ApiError as exc:
        return _refused(request, db, runtime, web, channel_id, exc)
    return _channel_view(request, db, runtime, web, channel_id, code=202,
                         notice="A test message is on its way; its delivery shows below.")


@router.post("/channels/{channel_id}/verify")
def verify_code(request: Request, channel_id: uuid.UUID, web: WebDep, db: SessionDep,
                runtime: RuntimeDep, csrf: Csrf = "",
                code: Annotated[str, Form(max_length=200)] = "") -> Response:
    _user, channel = _act(request, db, runtime, web, csrf, channel_id)
    if not manage.consume(channel, code):
        return _refused(request, db, runtime, web, channel_id,
                        ApiError(422, "That code is wrong or has expired."))
    db.commit()
    return see_other(f"/app/channels/{channel_id}")


@router.post("/channels/{channel_id}/resend")
def resend(request: Request, channel_id: uuid.UUID, web: WebDep, db: SessionDep,
           runtime: RuntimeDep, csrf: Csrf = "") -> Response:
    _user, channel = _act(request, db, runtime, web, csrf, channel_id)
    try:
        manage.resend_verification(db, runtime, channel)
    except ApiError as exc:
        return _refused(request, db, runtime, web, channel_id, exc)
    return _channel_view(request, db, runtime, web, channel_id, code=202,
                         notice="A new confirmation is on its way.")


@router.post("/channels/{channel_id}/link")
def link(request: Request, channel_id: uuid.UUID, web: WebDep, db: SessionDep,
         runtime: RuntimeDep, csrf: Csrf = "") -> Response:
    """A one-time code for the chat, shown on this answer only (with the ``t.me`` link and its
    QR code for Telegram)."""
    _user, channel = _act(request, db, runtime, web, csrf, channel_id)
    try:
        made = manage.link_code(db, runtime, channel)
    except ApiError as exc:
        return _refused(request, db, runtime, web, channel_id, exc)
    return _channel_view(request, db, runtime, web, channel_id, code=201, link=made)


@router.post("/channels/{channel_id}/rotate")
def rotate(request: Request, channel_id: uuid.UUID, web: WebDep, db: SessionDep,
           runtime: RuntimeDep, csrf: Csrf = "") -> Response:
    _user, channel = _act(request, db, runtime, web, csrf, channel_id)
    try:
        manage.rotate_secret(db, channel)
    except ApiError as exc:
        return _refused(request, db, runtime, web, channel_id, exc)
    return _channel_view(request, db, runtime, web, channel_id,
                         secret=str(channel.config["secret"]))


@router.post("/channels/{channel_id}/template")
def template(request: Request, channel_id: uuid.UUID, web: WebDep, db: SessionDep,
             runtime: RuntimeDep, csrf: Csrf = "",
             source: Annotated[str, Form(max_length=MAX_TEMPLATE_CHARS)] = "",
             action: Annotated[str, Form(max_length=10)] = "preview") -> Response:
    """Preview (nothing saved), save, or go back to the default template."""
    user, channel = _act(request, db, runtime, web, csrf, channel_id)
    try:
        if action == "clear":
            manage.clear_template(db, channel)
            return see_other(f"/app/channels/{channel_id}")
        if action == "save":
            saved = manage.set_template(db, user.plan, channel, source)
            return _channel_view(request, db, runtime, web, channel_id,
                                 notice="Template saved.", previews=manage.previews(saved))
        checked = manage.previews(manage.compiled(source))
    except ApiError as exc:
        return _refused(request, db, runtime, web, channel_id, exc, template=source)
    return _channel_view(request, db, runtime, web, channel_id, template=source,
                         previews=checked)


@router.post("/channels/{channel_id}/template/preview")
def template_preview(request: Request, channel_id: uuid.UUID, web: WebDep, db: SessionDep,
                     runtime: RuntimeDep, csrf: Csrf = "",
                     source: Annotated[str, Form(max_length=MAX_TEMPLATE_CHARS)] = "",
                     ) -> HTMLResponse:
    """The previews alone, for the editor's live preview as the template is typed."""
    _act(request, db, runtime, web, csrf, channel_id)
    try:
        previews, problem = manage.previews(manage.compiled(source)), ""
    except ApiError as exc:
        previews, problem = {}, exc.message
    return render(request, "channel_previews.html", previews=previews, problem=problem)


@router.post("/channels/{channel_id}/delete")
def delete_channel(request: Request, channel_id: uuid.UUID, web: WebDep, db: SessionDep,
                   runtime: RuntimeDep, csrf: Csrf = "") -> Response:
    user, channel = _act(request, db, runtime, web, csrf, channel_id)
    manage.delete(db, user, channel)
    return see_other("/app/channels")


# -- a mailed confirmation link (no sign-in: the recipient may be someone else) -------------


@router.get("/verify")
def verify_page(request: Request, token: Annotated[str, Query(max_length=200)],
                db: SessionDep) -> HTMLResponse:
    """The link's page: a button, not a confirmation (mail scanners open links)."""
    channel = manage.by_link_secret(db, token)
    if channel is None:
        raise NotFound
    return render(request, "verify.html", address=where(channel), token=token, done=False)


@router.post("/verify")
def verify(request: Request, db: SessionDep, runtime: RuntimeDep,
           token: Annotated[str, Form(max_length=200)] = "") -> HTMLResponse:
    security.check_origin(request, runtime.settings)
    channel = manage.by_link_secret(db, token)
    if channel is None or not manage.consume(channel, token):
        raise NotFound
    db.commit()
    return render(request, "verify.html", address=where(channel), token="", done=True)
