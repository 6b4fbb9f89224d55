"""Where a notification's "Open task" link leads: this server's web app (once its public URL is
one a phone can open), through sign-in back to the task, and — with the reply token the link
carries in its fragment — to one reply for that run without signing in."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote, unquote, urlsplit

import pytest
from cloud_kit import Account, Mailbox
from fastapi.testclient import TestClient
from sqlalchemy import select
from standins.kit import provider_settings, telegram
from standins.telegram import TelegramStandIn
from tg_kit import MACHINE, Chat, buttons
from web_kit import browser_of, signin_token

from claude_notify.cloud.server.relay.models import RelayAudit, RelayCommand
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

__all__ = ["telegram"]
PUBLIC = "https://notify.example.com"


@pytest.mark.parametrize(("public_url", "app_url", "expected"), [
    ("http://127.0.0.1:8000", None, None),  # the default: a phone cannot open it
    ("http://localhost:8000", None, None),
    ("http://[::1]:8000", None, None),
    ("https://notify.example.com/", None, "https://notify.example.com/app"),
    ("https://notify.example.com", "https://dash.example.com", "https://dash.example.com"),
    ("http://127.0.0.1:8000", "https://dash.example.com", "https://dash.example.com"),
])
def test_cards_link_to_the_web_app_once_the_public_url_is_reachable(
    public_url: str, app_url: str | None, expected: str | None
) -> None:
    settings = Settings(public_url=public_url, app_url=app_url)
    assert settings.dashboard_url == expected


@pytest.fixture
def settings(settings: Settings, telegram: TelegramStandIn) -> Settings:
    values = provider_settings(telegram=telegram.base_url)
    values["app_url"] = None  # the web app's own address, from the public URL
    return settings.replace(**values, public_url=PUBLIC)


def test_a_telegram_card_opens_the_task_after_sign_in_and_its_token_sends_one_reply(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime, telegram: TelegramStandIn,
    make_user: Callable[..., Account],
) -> None:
    user = make_user(plan="pro")
    chat = Chat(client, user, telegram)
    shown = chat.notify(cwd="/srv/app")
    url = urlsplit(buttons(shown)["Open task"]["url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == (
        f"{PUBLIC}/app/t/{quote(shown['task_id'], safe='')}")
    token = url.fragment.removeprefix("reply=")
    assert token.startswith("cnr_")

    phone = browser_of(client)  # signed out, as a phone opening the card would be
    opened = phone.get(url.path)
    where = opened.headers["location"]
    assert (opened.status_code, unquote(where)) == (303, f"/app/signin?next={url.path}")
    page = phone.get(where)
    assert page.status_code == 200 and 'id="reply"' in page.text and " hidden>" in page.text
    assert '<script src="/app/static/reply.js"' in page.text
    assert token not in page.text  # the fragment never reached the server

    assert phone.post("/app/reply", data={"token": token, "command": "make deploy"},
                      headers={"Origin": "https://evil.example"}).status_code == 403
    guessed = phone.post("/app/reply", data={"token": "cnr_x.y", "command": "make deploy"})
    assert guessed.status_code == 401 and "invalid or expired reply token" in guessed.text
    sent = phone.post("/app/reply", data={"token": token, "command": "<b>make</b> deploy"})
    assert sent.status_code == 202 and f"Sent to {MACHINE}" in sent.text
    assert "&lt;b&gt;make&lt;/b&gt; deploy" in sent.text
    again = phone.post("/app/reply", data={"token": token, "command": "make deploy"})
    assert again.status_code == 401 and "already used" in again.text, again.text
    with runtime.sessions() as db:
        queued = list(db.execute(select(RelayCommand.command, RelayCommand.cwd,
                                        RelayCommand.kind)))
        refused = db.scalars(select(RelayAudit.outcome)).all()
    assert queued == [("<b>make</b> deploy", "/srv/app", "shell")]
    assert sorted(refused) == ["queued", "refused"]  # the second use is audited for its owner

    # Signing in from the same browser ends on the task the card named.
    assert phone.post("/app/signin", data={"email": user.email}).status_code == 200
    confirmed = phone.post("/app/signin/confirm",
                           data={"token": signin_token(smtp_server, user.email)})
    assert (confirmed.status_code, confirmed.headers["location"]) == (303, url.path)
    assert phone.get(url.path).status_code == 200


@pytest.mark.parametrize("asked", ["https://evil.example/app/tasks", "//evil.example/app",
                                   "/app//evil.example", "/app/signin/confirm?token=x",
                                   "/v1/account", "/app/\\evil", "/app/t/x\r\nSet-Cookie: a=b"])
def test_signing_in_never_ends_on_another_site_or_outside_the_app(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account], asked: str,
) -> None:
    user = make_user()
    b = browser_of(client)
    page = b.get("/app/signin", params={"next": asked})
    assert page.status_code == 200 and "claude_notify_next" not in page.headers.get(
        "set-cookie", "")
    assert b.post("/app/signin", data={"email": user.email}).status_code == 200
    confirmed = b.post("/app/signin/confirm",
                       data={"token": signin_token(smtp_server, user.email)})
    assert (confirmed.status_code, confirmed.headers["location"]) == (303, "/app/tasks")
