"""Web Push against the push-service stand-in, and through the real app.

The stand-in verifies each push as a push service does (the VAPID JWT's ES256 signature, its
``aud``, ``exp`` and ``sub``, the key the subscription was made for) and decrypts the body with
the subscription's own private key and auth secret (RFC 8291), so a passing test means a real
browser's push service would have taken the push and the browser could have read it. Through
the app: "Enable notifications" saves the browser's subscription (the form token, the plan, one
channel per browser), a task event reaches the subscription, and a subscription the push
service reports gone removes its channel.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from cloud_kit import Account, Mailbox, wait_for
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fastapi.testclient import TestClient
from standins.kit import deliver, event, message, notice, provider_settings
from standins.webpush import Subscription, WebPushStandIn, b64url, check_vapid
from web_kit import browser_of, form_token, sign_in

from claude_notify.cloud.server.channels import catalog, webpush
from claude_notify.cloud.server.channels.vapid import new_private_key, public_key
from claude_notify.cloud.server.settings import Settings

KEY = new_private_key()
SUBJECT = "mailto:ops@example.com"


@pytest.fixture
def push() -> Iterator[WebPushStandIn]:
    standin = WebPushStandIn()
    standin.start()
    yield standin
    standin.stop()


def _settings(**changes: Any) -> Settings:
    values = {**provider_settings(), "webhook_allow_private": True, "vapid_private_key": KEY,
              "vapid_subject": SUBJECT, **changes}
    return Settings(**values)


def _subscription(push: WebPushStandIn) -> Subscription:
    return push.subscribe(public_key(KEY))


def test_a_push_is_signed_encrypted_and_reads_back_as_the_task(push: WebPushStandIn) -> None:
    sub = _subscription(push)
    failed = deliver(_settings(), message("webpush", sub.config,
                                          event(status="failure", exit_code=2)))
    assert failed.ok, failed.detail
    assert deliver(_settings(), message("webpush", sub.config, event())).ok
    first, second = push.accepted()
    shown = first.displayed["payload"]
    assert shown == {"v": 1, "id": shown["id"], "title": "❌ make test failed (exit 2, 3m12s)",
                     "body": "collected 120 items\n120 passed in 190.1s", "status": "failure",
                     "task": "7f3a", "run": False}
    claims = first.displayed["claims"]
    assert claims["aud"] == push.base_url and claims["sub"] == SUBJECT
    assert time.time() + 11 * 3600 < claims["exp"] <= time.time() + 24 * 3600
    assert (first.headers["urgency"], second.headers["urgency"]) == ("high", "normal")
    assert first.headers["ttl"] == "86400"
    # One task, one topic: an undelivered push is replaced by its task's newer one.
    assert first.headers["topic"] == second.headers["topic"] and len(first.headers["topic"]) <= 32
    test = deliver(_settings(), notice("webpush", sub.config, "It works."))
    assert test.ok and push.accepted()[-1].displayed["payload"]["body"] == "It works."


def test_the_standin_checks_the_key_and_the_signature(push: WebPushStandIn) -> None:
    """A subscription made for another server's key is refused (403, final); a token signed by
    another key than the one it names is refused too: the stand-in is no rubber stamp."""
    other = push.subscribe(public_key(new_private_key()))
    refused = deliver(_settings(), message("webpush", other.config))
    assert (refused.ok, refused.retryable, refused.remove_channel) == (False, False, False)
    assert "VAPID" in refused.detail and push.requests[-1].status == 403

    forger = ec.generate_private_key(ec.SECP256R1())
    head = b64url(json.dumps({"typ": "JWT", "alg": "ES256"}).encode())
    body = b64url(json.dumps({"aud": push.base_url, "sub": SUBJECT,
                              "exp": int(time.time()) + 3600}).encode())
    r, s = decode_dss_signature(forger.sign(f"{head}.{body}".encode(),
                                            ec.ECDSA(hashes.SHA256())))
    token = f"{head}.{body}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    status, why, _ = check_vapid(f"vapid t={token}, k={public_key(KEY)}",
                                 audience=push.base_url, server_key=public_key(KEY))
    assert (status, why) == (401, "the token's signature does not verify")


def test_a_gone_subscription_removes_the_channel_and_a_busy_service_is_retried(
    push: WebPushStandIn,
) -> None:
    sub = _subscription(push)
    push.gone.add(sub.id)
    gone = deliver(_settings(), message("webpush", sub.config))
    assert (gone.ok, gone.remove_channel, gone.retryable) == (False, True, False), gone.detail
    assert "HTTP 410" in gone.detail
    push.answer((404, None, {}))
    assert deliver(_settings(), message("webpush", sub.config)).remove_channel
    push.answer((429, None, {"retry-after": "7"}))
    busy = deliver(_settings(), message("webpush", sub.config))
    assert (busy.ok, busy.retryable, busy.retry_after, busy.remove_channel) == (
        False, True, 7.0, False)


def test_hostile_text_is_sent_as_data_and_a_huge_tail_keeps_its_end(
    push: WebPushStandIn,
) -> None:
    sub = _subscription(push)
    hostile = '<img src=x onerror=alert(1)>"},"task":"../../evil'
    tail = "x" * 50_000 + "\n</script><b>THE END</b>"
    assert deliver(_settings(), message("webpush", sub.config,
                                        event(command=hostile, tail=tail))).ok
    [got] = push.accepted()
    shown = got.displayed["payload"]
    assert hostile in shown["title"] and shown["task"] == "7f3a"  # the text stayed text
    assert shown["body"].endswith("</script><b>THE END</b>")
    assert len(got.displayed["raw"]) <= webpush.MAX_PAYLOAD


def test_endpoints_and_keys_are_checked_when_added_and_when_sent(push: WebPushStandIn) -> None:
    sub = _subscription(push)
    closed = _settings(webhook_allow_private=False)
    refused = deliver(closed, message("webpush", sub.config))
    assert refused.ok is False and "private or loopback" in refused.detail
    assert push.count() == 0
    good = {"endpoint": "https://fcm.googleapis.com/fcm/send/abc", **sub.keys}
    assert catalog.validate_config("webpush", good, allow_private=False) == good
    for bad, why in (({"endpoint": "http://push.example.com/x"}, "https://"),
                     ({"endpoint": "https://10.0.0.1/x"}, "private"),
                     ({"p256dh": sub.keys["auth"]}, "p256dh"),
                     ({"auth": sub.keys["p256dh"]}, "auth"),
                     ({"extra": "1"}, "unknown config key")):
        with pytest.raises(ValueError, match=why):
            catalog.validate_config("webpush", {**good, **bad}, allow_private=False)
    unset = deliver(_settings(vapid_private_key=None), message("webpush", sub.config))
    assert unset.detail == "Web Push is not configured on this server"


def test_the_cli_makes_a_key_the_server_accepts() -> None:
    from claude_notify.cloud.server.cli import server

    out = CliRunner().invoke(server, ["vapid-keys"])
    assert out.exit_code == 0, out.output
    line = next(x for x in out.output.splitlines() if x.startswith("CLAUDE_NOTIFY_SERVER_VAPID"))
    key = line.partition("=")[2]
    made = Settings.from_env({"CLAUDE_NOTIFY_SERVER_VAPID_PRIVATE_KEY": key,
                              "CLAUDE_NOTIFY_SERVER_PUBLIC_URL": "https://notify.example.com/"})
    assert made.validate().push_subject == "https://notify.example.com"
    assert public_key(key) in out.output


# -- through the app ----------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(vapid_private_key=KEY, vapid_subject=SUBJECT)


def _subscribe(b: TestClient, sub: Subscription, csrf: str) -> Any:
    return b.post("/app/push/subscribe", data={"csrf": csrf, "endpoint": sub.endpoint,
                                               **sub.keys})


def test_enable_notifications_saves_this_browser_and_a_gone_one_is_removed(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account],
    push: WebPushStandIn,
) -> None:
    user = make_user(plan="pro")
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    page = b.get("/app/channels").text
    assert f'data-key="{public_key(KEY)}"' in page and 'id="push-enable"' in page
    csrf = form_token(page)
    sub = _subscription(push)
    assert _subscribe(b, sub, "not-the-token").status_code == 403
    made = _subscribe(b, sub, csrf)
    assert made.status_code == 201, made.text
    again = _subscribe(b, sub, csrf)  # the same browser again: its channel, not a second one
    assert (again.status_code, again.json()) == (200, made.json())
    [channel] = client.get("/v1/channels", headers=user.headers).json()
    assert channel["type"] == "webpush" and "auth" not in channel["config"]
    assert b.get(made.json()["channel"]).status_code == 200

    assert client.post("/v1/events", headers=user.headers,
                       json=event(task_id="t-push", status="failure")).status_code == 202
    [got] = wait_for(push.accepted, what="the task's push")
    assert got.displayed["payload"]["task"] == "t-push"

    push.gone.add(sub.id)
    assert client.post("/v1/events", headers=user.headers,
                       json=event(task_id="t-gone")).status_code == 202
    wait_for(lambda: not client.get("/v1/channels", headers=user.headers).json(),
             what="the gone subscription's channel to be removed")


def test_the_free_plan_is_told_why_and_nothing_is_saved(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account],
    push: WebPushStandIn,
) -> None:
    user = make_user(plan="free")
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    page = b.get("/app/channels").text
    assert 'id="push-enable"' not in page and "webpush needs pro" in page
    refused = _subscribe(b, _subscription(push), form_token(page))
    assert refused.status_code == 403 and "needs pro" in refused.json()["error"]
    assert client.get("/v1/channels", headers=user.headers).json() == []


def test_a_permission_request_reaches_the_browser_and_its_page_answers_it(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account],
    push: WebPushStandIn,
) -> None:
    """With no Telegram chat at all, a browser with notifications on is asked (Allow / Deny);
    the answer is what the service worker sends: the approval page's own form, with the token
    the page carries, through the signed-in session."""
    from test_approvals import agent, ask

    user = make_user(plan="pro")
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    sub = _subscription(push)
    assert _subscribe(b, sub, form_token(b.get("/app/channels").text)).status_code == 201
    with agent(client, user) as ws:
        asked = ask(ws, "<b>rm</b> -rf build")
        [got] = wait_for(lambda: [r for r in push.accepted()
                                  if r.displayed["payload"].get("kind") == "approval"],
                         what="the permission request at the push service")
        shown = got.displayed["payload"]
        approval = asked["id"].replace("-", "")
        assert shown == {"v": 1, "kind": "approval", "approval": approval,
                         "title": "Claude wants to use Bash",
                         "body": "project · machine-1234\n<b>rm</b> -rf build"}
        assert got.headers["urgency"] == "high" and len(got.headers["topic"]) <= 32
        page = b.get(f"/app/approvals/{approval}")
        assert page.status_code == 200
        answered = b.post(f"/app/approvals/{approval}",
                          data={"csrf": form_token(page.text), "answer": "allow"})
        assert answered.status_code == 303
        decision = ws.receive_json()
        assert (decision["type"], decision["id"], decision["state"]) == (
            "decision", asked["id"], "allowed")


def test_a_gone_browser_is_removed_when_a_permission_request_is_pushed(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account],
    push: WebPushStandIn,
) -> None:
    from test_approvals import agent, ask

    user = make_user(plan="pro")
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    sub = _subscription(push)
    assert _subscribe(b, sub, form_token(b.get("/app/channels").text)).status_code == 201
    push.gone.add(sub.id)
    with agent(client, user) as ws:
        ask(ws)
        wait_for(lambda: not client.get("/v1/channels", headers=user.headers).json(),
                 what="the gone browser's channel to be removed")
