"""Self-hosting traps, as the API answers them (the app in-process, SQLite and PostgreSQL): the
default plan of new accounts, a sign-in the server cannot mail, channels the plan or the server
cannot serve, a private webhook's refusal naming the setting that allows it."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cloud_kit import Account, Mailbox, Receiver, free_port, mail_text, wait_for
from fastapi.testclient import TestClient

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.errors import ConfigError


@contextlib.contextmanager
def app(settings: Settings) -> Iterator[TestClient]:
    runtime = Runtime.build(settings)
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            yield client
    finally:
        runtime.close()


@contextlib.contextmanager
def hanging_up_smtp() -> Iterator[int]:
    """A port where something accepts connections and closes them at once: the quick check
    passes, every mail fails."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        listener.close()


def sign_in(client: TestClient, box: Mailbox, address: str) -> dict[str, Any]:
    before = box.count()
    started = client.post("/v1/auth/device", json={"email": address, "scopes": [
        "events:write", "tasks:read"]})
    assert started.status_code == 200, started.text
    text = mail_text(box.wait(before + 1)[before])
    link = next(word for word in text.split() if "/v1/auth/approve?token=" in word)
    approved = client.post("/v1/auth/approve", data={
        "token": link.split("token=")[1], "code": started.json()["user_code"]})
    assert approved.status_code == 200
    got = client.post("/v1/auth/token", json={"device_code": started.json()["device_code"]})
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def test_default_plan_is_a_validated_setting() -> None:
    assert Settings().default_plan == "free"
    env = {"CLAUDE_NOTIFY_SERVER_DEFAULT_PLAN": "pro"}
    assert Settings.from_env(env).validate().default_plan == "pro"
    with pytest.raises(ConfigError, match="DEFAULT_PLAN='gold' must be free or pro"):
        Settings.from_env({"CLAUDE_NOTIFY_SERVER_DEFAULT_PLAN": "gold"}).validate()


def test_an_e_mail_sign_up_gets_the_servers_default_plan(
    settings: Settings, smtp_server: Mailbox
) -> None:
    with app(settings.replace(default_plan="pro")) as client:
        token = sign_in(client, smtp_server, "Owner@Example.com")["token"]
        usage = client.get("/v1/usage", headers={"Authorization": f"Bearer {token}"}).json()
    assert (usage["email"], usage["plan"]) == ("owner@example.com", "pro")
    assert "telegram" in usage["channels_allowed"]


def test_a_sign_in_is_refused_at_once_when_nothing_answers_at_smtp(settings: Settings) -> None:
    port = free_port()
    with app(settings.replace(smtp_port=port)) as client:
        refused = client.post("/v1/auth/device", json={"email": "a@example.com"})
    assert refused.status_code == 503
    assert refused.json()["error"] == {
        "code": "email_unavailable",
        "message": f"this server cannot send e-mail: nothing answers at SMTP 127.0.0.1:{port}; "
                   "ask its operator for a token (claude-notify login --token)"}


def test_a_sign_in_mail_that_fails_ends_the_wait_with_its_reason(settings: Settings) -> None:
    with hanging_up_smtp() as port, app(settings.replace(smtp_port=port)) as client:
        started = client.post("/v1/auth/device", json={"email": "a@example.com"})
        assert started.status_code == 200, started.text
        poll = {"device_code": started.json()["device_code"]}

        def answered() -> Any:
            got = client.post("/v1/auth/token", json=poll)
            return got if got.status_code != 400 else None

        ended = wait_for(answered, timeout=20, what="the poll to report the failed mail")
    assert ended.status_code == 503
    error = ended.json()["error"]
    assert error["code"] == "email_unavailable"
    assert error["message"].startswith("this server cannot send e-mail: the sign-in e-mail "
                                       "failed (")
    assert error["message"].endswith("; ask its operator for a token (claude-notify login "
                                     "--token)")


def test_a_private_webhook_refusal_names_the_setting(settings: Settings) -> None:
    with app(settings.replace(webhook_allow_private=False)) as client:
        refused = client.post("/v1/channels", headers=_pro_user(client), json={
            "type": "webhook", "config": {"url": "http://192.168.1.20:8080/hook"}})
    assert refused.status_code == 422
    assert "CLAUDE_NOTIFY_SERVER_WEBHOOK_ALLOW_PRIVATE=1" in refused.json()["error"]["message"]


def _pro_user(client: TestClient) -> dict[str, str]:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.sessions.begin() as session:
        _, token = auth.create_user(session, "pro-owner@example.com", plan="pro")
    return {"Authorization": f"Bearer {token.secret}"}


def test_a_channel_the_plan_cannot_use_is_refused_and_so_is_its_test(
    client: TestClient, runtime: Runtime, receiver: Receiver, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    hook = {"type": "webhook", "config": {"url": receiver.url}}
    refused = client.post("/v1/channels", json=hook, headers=user.headers)
    assert (refused.status_code, refused.json()["error"]) == (403, {
        "code": "plan_refused", "message": "the free plan sends e-mail only; webhook needs pro"})
    assert client.get("/v1/channels", headers=user.headers).json() == []
    with runtime.sessions.begin() as session:
        auth.set_plan(session, user.email, "pro")
    made = client.post("/v1/channels", json=hook, headers=user.headers)
    assert made.status_code == 201, made.text
    test = f"/v1/channels/{made.json()['id']}/test"
    assert client.post(test, headers=user.headers).status_code == 202
    receiver.wait(1)
    with runtime.sessions.begin() as session:
        auth.set_plan(session, user.email, "free")  # a downgrade keeps the channel
    again = client.post(test, headers=user.headers)
    assert again.status_code == 403
    assert again.json()["error"]["message"] == "the free plan sends e-mail only; webhook needs pro"
    kinds = [n["kind"] for n in client.get("/v1/notifications", headers=user.headers)
             .json()["items"]]
    assert kinds == ["test"]  # the refused test queued nothing


def test_telegram_without_a_bot_is_refused_before_anything_is_made(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    refused = client.post("/v1/channels", json={"type": "tg", "config": {}}, headers=user.headers)
    assert (refused.status_code, refused.json()["error"]) == (422, {
        "code": "not_configured",
        "message": "this server has no Telegram bot: its operator has not set "
                   "CLAUDE_NOTIFY_SERVER_TELEGRAM_BOT_TOKEN"})
    assert client.get("/v1/channels", headers=user.headers).json() == []


def test_usage_names_the_accounts_address(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user(email="Someone@Example.com")
    assert client.get("/v1/usage", headers=user.headers).json()["email"] == "someone@example.com"
