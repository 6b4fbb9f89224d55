"""The web app's channel pages through the real app, its worker, the real SMTP server and the
Telegram stand-in, on SQLite and PostgreSQL: adding a channel and confirming its recipient,
linking a Telegram chat from the page, tests and last errors, rules, group replies and the
template editor, each under the same rules as the API (which the pages share)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from html import unescape

import pytest
from cloud_kit import Account, Mailbox, Receiver, mail_text, wait_for
from fastapi.testclient import TestClient
from standins.kit import provider_settings, telegram
from standins.telegram import TelegramStandIn
from tg_kit import HOOK, update
from web_kit import browser_of, form_token, sign_in

from claude_notify.cloud.server.db.models import Channel
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

__all__ = ["telegram"]


@pytest.fixture
def settings(settings: Settings, telegram: TelegramStandIn) -> Settings:
    return settings.replace(**provider_settings(telegram=telegram.base_url))


def _signed_in(client: TestClient, box: Mailbox, user: Account) -> tuple[TestClient, str]:
    b = browser_of(client)
    sign_in(b, box, user.email)
    return b, form_token(b.get("/app/channels").text)


def _add(b: TestClient, token: str, **form: object) -> str:
    """Add a channel from the page; its id (from where the page sends the browser)."""
    answer = b.post("/app/channels", data={"csrf": token, **form})
    assert answer.status_code == 303, answer.text
    return answer.headers["location"].rsplit("/", 1)[1]


def _channel(runtime: Runtime, channel_id: str) -> Channel:
    with runtime.sessions() as db:
        row = db.get(Channel, uuid.UUID(channel_id))
        assert row is not None
        return row


def _mails_to(box: Mailbox, address: str) -> list[str]:
    return [mail_text(m) for m in box.messages if address in m.rcpt_tos]


def test_an_email_channel_is_added_confirmed_by_its_code_and_tested_from_the_page(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime,
    make_user: Callable[..., Account],
) -> None:
    user = make_user()
    b, token = _signed_in(client, smtp_server, user)
    address = f"alerts-{uuid.uuid4().hex[:6]}@example.com"
    channel_id = _add(b, token, type="email", target=address, name="<b>mine</b>",
                      on=["finished", "failure"])
    page = b.get(f"/app/channels/{channel_id}").text
    assert "waiting for its recipient to confirm" in page
    assert "&lt;b&gt;mine&lt;/b&gt;" in page and "<b>mine</b>" not in page
    assert "Send a test" not in page
    refused = b.post(f"/app/channels/{channel_id}/test", data={"csrf": token})
    assert refused.status_code == 409 and "not verified yet" in refused.text

    mail = wait_for(lambda: _mails_to(smtp_server, address), what="the confirmation mail")[0]
    code = re.search(r"entering the code (\S+)\.", mail)
    assert code is not None and f"/app/verify?token={code.group(1)}" in mail
    wrong = b.post(f"/app/channels/{channel_id}/verify", data={"csrf": token, "code": "nope"})
    assert wrong.status_code == 422 and "wrong or has expired" in wrong.text
    assert _channel(runtime, channel_id).verified_at is None
    right = b.post(f"/app/channels/{channel_id}/verify",
                   data={"csrf": token, "code": code.group(1)})
    assert right.status_code == 303
    assert _channel(runtime, channel_id).verified_at is not None

    tested = b.post(f"/app/channels/{channel_id}/test", data={"csrf": token})
    assert tested.status_code == 202 and "on its way" in tested.text
    wait_for(lambda: len(_mails_to(smtp_server, address)) == 2, what="the test mail")
    assert "this channel works" in _mails_to(smtp_server, address)[1]
    wait_for(lambda: "Last sent</dt><dd>never" not in b.get(f"/app/channels/{channel_id}").text,
             what="the page to show the test as sent")
    listed = b.get("/app/channels").text
    assert address in listed and 'class="status d-sent">on' in listed


def test_the_free_plan_is_offered_only_what_it_can_send_and_cannot_post_the_rest(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, receiver: Receiver,
    make_user: Callable[..., Account],
) -> None:
    user = make_user()
    b, token = _signed_in(client, smtp_server, user)
    page = b.get("/app/channels").text
    webhook = re.search(r'<input type="radio" name="type" value="webhook"[^>]*>', page)
    assert webhook is not None and "disabled" in webhook.group(0)
    assert re.search(r'value="email" checked>', page)
    answer = b.post("/app/channels", data={"csrf": token, "type": "webhook",
                                           "target": receiver.url, "on": ["finished"]})
    assert answer.status_code == 403 and "free plan" in answer.text
    assert receiver.url in answer.text  # what was typed is kept for the next try
    bad = b.post("/app/channels", data={"csrf": token, "type": "email", "target": "not an address",
                                        "on": ["finished"]})
    assert bad.status_code == 422 and "not a valid e-mail address" in bad.text
    with runtime.sessions() as db:
        assert db.query(Channel).filter(Channel.user_id == user.user_id).count() == 0


def test_a_failing_webhook_shows_its_last_error_and_its_secret_only_once(
    client: TestClient, smtp_server: Mailbox, receiver: Receiver,
    make_user: Callable[..., Account],
) -> None:
    user = make_user(plan="pro")
    b, token = _signed_in(client, smtp_server, user)
    channel_id = _add(b, token, type="webhook", target=f"{receiver.url}?key=hush",
                      on=["finished"])
    page = b.get(f"/app/channels/{channel_id}").text
    assert "hush" not in page  # a URL's query may hold a credential: never shown
    assert "whsec_" not in page
    receiver.answer(500, 500, 500, 500)
    assert b.post(f"/app/channels/{channel_id}/test", data={"csrf": token}).status_code == 202
    shown = wait_for(lambda: (lambda p: p if "gave up" in p else None)(
        b.get(f"/app/channels/{channel_id}").text), what="the last error on the page")
    assert re.search(r"Last error</dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: gave up after 4 "
                     r"attempts: HTTP 500", shown)
    assert "HTTP 500" in b.get("/app/channels").text

    rotated = b.post(f"/app/channels/{channel_id}/rotate", data={"csrf": token})
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", rotated.text)
    assert rotated.status_code == 200 and secret is not None
    assert secret.group(0) not in b.get(f"/app/channels/{channel_id}").text


def test_a_telegram_chat_is_linked_from_the_page_by_its_link_and_only_by_it(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, telegram: TelegramStandIn,
    make_user: Callable[..., Account],
) -> None:
    user = make_user(plan="pro")
    b, token = _signed_in(client, smtp_server, user)
    channel_id = _add(b, token, type="telegram", on=["finished"])
    page = b.get(f"/app/channels/{channel_id}").text
    assert "no chat linked yet" in page and "Link a chat" in page
    linked = b.post(f"/app/channels/{channel_id}/link", data={"csrf": token})
    assert linked.status_code == 201
    deep = re.search(r'href="(https://t\.me/claude_notify_test_bot\?start=([\w-]+))"', linked.text)
    assert deep is not None
    assert re.search(r'<img class="qr" src="data:image/svg\+xml', linked.text)
    assert f"/start {deep.group(2)}" in unescape(linked.text)
    assert deep.group(2) not in b.get(f"/app/channels/{channel_id}").text  # shown once

    assert client.post("/v1/telegram/webhook", json=update("/start wrong-code", chat=999),
                       headers=HOOK).status_code == 200
    assert _channel(runtime, channel_id).verified_at is None
    assert client.post("/v1/telegram/webhook", json=update(f"/start {deep.group(2)}", chat=555),
                       headers=HOOK).status_code == 200
    telegram.wait(1)  # "linked"
    page = b.get(f"/app/channels/{channel_id}").text
    assert "Linked: ops" in page and "Send a test" in page
    assert b.post(f"/app/channels/{channel_id}/test", data={"csrf": token}).status_code == 202
    telegram.wait(2)

    for allow, expected in (("on", True), ("", None)):
        saved = b.post(f"/app/channels/{channel_id}/group-replies",
                       data={"csrf": token, "allow": allow})
        assert saved.status_code == 303
        config = _channel(runtime, channel_id).config
        assert config.get("allow_group_replies") is expected and config["chat_id"] == 555


def test_rules_and_switching_off_are_saved_and_a_bad_pattern_is_refused(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime,
    make_user: Callable[..., Account],
) -> None:
    user = make_user()
    b, token = _signed_in(client, smtp_server, user)
    channel_id = _add(b, token, type="email", target=user.email, on=["finished"])
    bad = b.post(f"/app/channels/{channel_id}/settings",
                 data={"csrf": token, "name": "x", "on": ["match"], "regex": "(", "enabled": "on"})
    assert bad.status_code == 422 and "does not compile" in bad.text
    none = b.post(f"/app/channels/{channel_id}/settings",
                  data={"csrf": token, "name": "x", "enabled": "on"})
    assert none.status_code == 422 and "non-empty list" in none.text
    assert _channel(runtime, channel_id).rules == {"on": ["finished"], "regex": None}
    saved = b.post(f"/app/channels/{channel_id}/settings",
                   data={"csrf": token, "name": "  ci   box ", "on": ["failure", "match"],
                         "regex": "^ERROR"})
    assert saved.status_code == 303
    row = _channel(runtime, channel_id)
    assert (row.name, row.rules, row.enabled, row.disabled_reason) == (
        "ci box", {"on": ["failure", "match"], "regex": "^ERROR"}, False, "by its owner")
    assert "off (by its owner)" in b.get(f"/app/channels/{channel_id}").text
    deleted = b.post(f"/app/channels/{channel_id}/delete", data={"csrf": token})
    assert (deleted.status_code, deleted.headers["location"]) == (303, "/app/channels")
    assert b.get(f"/app/channels/{channel_id}").status_code == 404


def test_the_template_editor_previews_every_dialect_as_text_and_saves_for_pro_only(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime,
    make_user: Callable[..., Account],
) -> None:
    pro, free = make_user(plan="pro"), make_user()
    b, token = _signed_in(client, smtp_server, pro)
    channel_id = _add(b, token, type="email", target=pro.email, on=["finished"])
    source = "<script>alert(1)</script> {{ status }}: {{ command }}"
    shown = b.post(f"/app/channels/{channel_id}/template",
                   data={"csrf": token, "source": source, "action": "preview"})
    assert shown.status_code == 200
    for dialect in ("text", "html", "telegram", "discord", "lark_md"):
        assert f"<h4>{dialect}</h4>" in shown.text
    assert "<script>alert(1)</script>" not in shown.text
    assert "template" not in _channel(runtime, channel_id).config  # a preview saves nothing

    fragment = b.post(f"/app/channels/{channel_id}/template/preview",
                      data={"csrf": token, "source": "{{ nope }"}, headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and fragment.text.startswith('<div id="previews"')
    assert "template:" in fragment.text and "<html" not in fragment.text
    broken = b.post(f"/app/channels/{channel_id}/template",
                    data={"csrf": token, "source": "{{ nope }", "action": "save"})
    assert broken.status_code == 422 and "{{ nope }" in unescape(broken.text)  # kept to fix

    saved = b.post(f"/app/channels/{channel_id}/template",
                   data={"csrf": token, "source": source, "action": "save"})
    assert saved.status_code == 200 and "Template saved" in saved.text
    assert _channel(runtime, channel_id).config["template"] == source
    cleared = b.post(f"/app/channels/{channel_id}/template",
                     data={"csrf": token, "source": "", "action": "clear"})
    assert cleared.status_code == 303 and "template" not in _channel(runtime, channel_id).config

    f, free_token = _signed_in(client, smtp_server, free)
    free_id = _add(f, free_token, type="email", target=free.email, on=["finished"])
    assert "a pro feature" in f.get(f"/app/channels/{free_id}").text
    refused = f.post(f"/app/channels/{free_id}/template",
                     data={"csrf": free_token, "source": source, "action": "save"})
    assert refused.status_code == 403 and "pro feature" in refused.text


def test_another_users_channel_is_not_found_by_any_page_or_form(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime,
    make_user: Callable[..., Account],
) -> None:
    owner, stranger = make_user(plan="pro"), make_user(plan="pro")
    b, token = _signed_in(client, smtp_server, owner)
    channel_id = _add(b, token, type="webhook", target="https://example.com/hook",
                      on=["finished"], name="owner's hook")
    s, stranger_token = _signed_in(client, smtp_server, stranger)
    assert "owner&#39;s hook" not in s.get("/app/channels").text
    assert s.get(f"/app/channels/{channel_id}").status_code == 404
    for action in ("settings", "group-replies", "test", "verify", "resend", "link", "rotate",
                   "template", "template/preview", "delete"):
        answer = s.post(f"/app/channels/{channel_id}/{action}",
                        data={"csrf": stranger_token, "on": ["failure"], "code": "x",
                              "source": "x", "action": "save"})
        assert answer.status_code == 404, action
    row = _channel(runtime, channel_id)
    assert (row.name, row.rules["on"], row.enabled) == ("owner's hook", ["finished"], True)
    assert "template" not in row.config


def test_a_mailed_confirmation_link_confirms_only_when_its_page_is_posted(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime,
    make_user: Callable[..., Account],
) -> None:
    user = make_user()
    b, token = _signed_in(client, smtp_server, user)
    address = f"<i>x</i>-{uuid.uuid4().hex[:6]}@example.com".replace("<i>x</i>", "ok")
    channel_id = _add(b, token, type="email", target=address, on=["finished"])
    mail = wait_for(lambda: _mails_to(smtp_server, address), what="the confirmation mail")[0]
    link = next(w for w in mail.split() if "/app/verify?token=" in w)
    secret = link.split("token=")[1]
    stranger = browser_of(client)  # the recipient need not be signed in
    page = stranger.get("/app/verify", params={"token": secret})
    assert page.status_code == 200 and f"Send task notifications to {address}?" in page.text
    assert _channel(runtime, channel_id).verified_at is None
    foreign = stranger.post("/app/verify", data={"token": secret},
                            headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert _channel(runtime, channel_id).verified_at is None
    done = stranger.post("/app/verify", data={"token": secret})
    assert done.status_code == 200 and "Confirmed" in done.text
    assert _channel(runtime, channel_id).verified_at is not None
    assert stranger.post("/app/verify", data={"token": secret}).status_code == 404
