"""Delivery for real: e-mail into aiosmtpd over STARTTLS, webhooks into a verifying receiver.

The worker is the embedded one started by the app; retries use the fast schedule from the
``settings`` fixture (50-200 ms) so the backoff paths run in well under a second.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import ssl
import threading
import typing
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme
from cloud_kit import Account, Mailbox, Receiver, mail_text, parse_mail, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from claude_notify.cloud.server.api.routes import notifications
from claude_notify.cloud.server.channels.base import Message, SendResult
from claude_notify.cloud.server.channels.webhook import WebhookChannel
from claude_notify.cloud.server.db.models import Channel, Delivery, DeliveryAttempt, DeliveryStatus
from claude_notify.cloud.server.delivery import engine, retry
from claude_notify.cloud.server.delivery.http import delivery_client
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import TaskEvent


def finished(task_id: str = "t-1", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "finished",
        "source": "run",
        "task_id": task_id,
        "machine_id": "m-1",
        "status": "failure",
        "exit_code": 2,
        "command": "make test",
        "duration_s": 192.0,
    }
    return TaskEvent.from_dict({**base, **fields}).to_dict()


def notification(client: TestClient, account: Account, notification_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/notifications/{notification_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def settled(
    client: TestClient, account: Account, notification_id: str, status: str
) -> dict[str, Any]:
    return wait_for(
        lambda: (n := notification(client, account, notification_id))["status"] == status and n,
        what=f"notification {notification_id} to become {status}",
    )


def add_webhook(client: TestClient, account: Account, url: str) -> dict[str, Any]:
    response = client.post(
        "/v1/channels",
        json={
            "type": "webhook",
            "name": "ci",
            "config": {"url": url},
            "rules": {"on": ["finished"]},
        },
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# ------------------------------------------------------------------------------------ e-mail


def test_a_finished_task_is_mailed_over_starttls_as_text_and_escaped_html(
    client: TestClient,
    smtp_server: Mailbox,
    make_user: Callable[..., Account],
    verified_email: Callable[..., str],
) -> None:
    user = make_user()
    verified_email(client, user, "dev@example.com")
    hostile = finished(
        command="make test\r\nBcc: victim@example.com",
        tail="<script>alert(1)</script> & done\n",
    )
    sent = client.post("/v1/events", json=hostile, headers=user.headers).json()
    settled(client, user, sent["notifications"][0]["id"], "sent")
    envelope = smtp_server.wait(2)[1]
    assert smtp_server.tls == [True, True]
    assert envelope.rcpt_tos == ["dev@example.com"]
    mail = parse_mail(envelope)
    assert "\n" not in str(mail["Subject"]) and "Bcc" not in mail
    assert str(mail["Subject"]).startswith(
        "❌ make test Bcc: victim@example.com failed (exit 2, 3m12s)"
    )
    assert mail.get_content_type() == "multipart/alternative"
    assert "<script>alert(1)</script> & done" in mail_text(envelope)
    html_part = mail.get_body(preferencelist=("html",))
    assert html_part is not None
    html = str(html_part.get_content())
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; done" in html
    assert "<script>" not in html


def test_unverified_addresses_receive_nothing_but_the_confirmation(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    client.post(
        "/v1/channels",
        json={"type": "email", "config": {"address": "stranger@example.com"}},
        headers=user.headers,
    )
    sent = client.post("/v1/events", json=finished(), headers=user.headers).json()
    [rejected] = sent["notifications"]
    assert (rejected["status"], rejected["reason"]) == ("rejected", "recipient not verified yet")
    smtp_server.wait(1)
    assert "Confirm" in str(parse_mail(smtp_server.messages[0])["Subject"])


def test_the_confirmation_link_works_once(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    channel = client.post(
        "/v1/channels",
        json={"type": "email", "config": {"address": "me@example.com"}},
        headers=user.headers,
    ).json()
    assert channel["verified"] is False
    text = mail_text(smtp_server.wait(1)[0])
    link = next(word for word in text.split() if "/app/verify?token=" in word)
    token = link.split("token=")[1]
    page = client.get("/app/verify", params={"token": token})  # what a mail scanner does
    assert page.status_code == 200 and 'action="/app/verify"' in page.text
    got = client.get(f"/v1/channels/{channel['id']}", headers=user.headers).json()
    assert got["verified"] is False
    confirmed = client.post("/app/verify", data={"token": token})
    assert confirmed.status_code == 200 and "Confirmed" in confirmed.text
    assert client.post("/app/verify", data={"token": token}).status_code == 404
    assert client.get("/app/verify", params={"token": token}).status_code == 404
    # Links mailed before the web app opened /v1/verify, which API clients may still use.
    assert client.get("/v1/verify", params={"token": "guess"}).status_code == 404
    got = client.get(f"/v1/channels/{channel['id']}", headers=user.headers).json()
    assert got["verified"] is True
    test = client.post(f"/v1/channels/{channel['id']}/test", headers=user.headers)
    assert test.status_code == 202
    assert "test message" in mail_text(smtp_server.wait(2)[1])


# ------------------------------------------------------------------------------------ webhooks


def test_webhooks_are_signed_per_standard_webhooks(
    client: TestClient, receiver: Receiver, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    hook = add_webhook(client, user, receiver.url)
    event = finished("hook-task")
    client.post("/v1/events", json=event, headers=user.headers)
    [call] = receiver.wait(1)
    verified = Webhook(hook["config"]["secret"]).verify(call.body, call.headers)
    assert verified["type"] == "task.finished"
    assert verified["data"] == event
    with pytest.raises(Exception, match="signature"):
        Webhook(hook["config"]["secret"]).verify(call.body + b" ", call.headers)


def test_429_with_retry_after_is_honoured(
    client: TestClient, receiver: Receiver, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    add_webhook(client, user, receiver.url)
    receiver.answer((429, {"Retry-After": "1"}), 200)
    sent = client.post("/v1/events", json=finished(), headers=user.headers).json()
    final = settled(client, user, sent["notifications"][0]["id"], "sent")
    first, second = receiver.wait(2)
    assert second.at - first.at >= 1.0
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert [a["outcome"] for a in final["attempt_log"]] == ["retry", "ok"]
    assert receiver.count() == 2


def test_410_dead_letters_and_disables_the_channel(
    client: TestClient, receiver: Receiver, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    hook = add_webhook(client, user, receiver.url)
    receiver.answer(410)
    sent = client.post("/v1/events", json=finished("a"), headers=user.headers).json()
    dead = settled(client, user, sent["notifications"][0]["id"], "dead")
    assert dead["reason"] == "HTTP 410: endpoint gone"
    channel = client.get(f"/v1/channels/{hook['id']}", headers=user.headers).json()
    assert channel["enabled"] is False
    later = client.post("/v1/events", json=finished("b"), headers=user.headers).json()
    assert later["notifications"][0]["status"] == "rejected"
    assert "disabled" in later["notifications"][0]["reason"]
    assert receiver.count() == 1


def test_5xx_retries_then_dead_letters_and_replay_delivers(
    client: TestClient, receiver: Receiver, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    add_webhook(client, user, receiver.url)
    receiver.answer(500, 502, 503, 504)
    sent = client.post("/v1/events", json=finished(), headers=user.headers).json()
    notification_id = sent["notifications"][0]["id"]
    dead = settled(client, user, notification_id, "dead")
    assert dead["attempts"] == 4
    assert dead["reason"] == "gave up after 4 attempts: HTTP 504"
    letters = client.get("/v1/notifications", params={"status": "dead"}, headers=user.headers)
    assert [n["id"] for n in letters.json()["items"]] == [notification_id]
    assert receiver.count() == 4

    replayed = client.post(f"/v1/notifications/{notification_id}/replay", headers=user.headers)
    assert replayed.status_code == 202
    final = settled(client, user, notification_id, "sent")
    calls = receiver.wait(5)
    assert len({c.headers["webhook-id"] for c in calls}) == 1
    assert [a["outcome"] for a in final["attempt_log"]] == ["retry"] * 3 + ["permanent", "ok"]
    again = client.post(f"/v1/notifications/{notification_id}/replay", headers=user.headers)
    assert again.status_code == 409


def test_a_4xx_is_permanent_at_once(
    client: TestClient, receiver: Receiver, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    add_webhook(client, user, receiver.url)
    receiver.answer(400)
    sent = client.post("/v1/events", json=finished(), headers=user.headers).json()
    dead = settled(client, user, sent["notifications"][0]["id"], "dead")
    assert (dead["attempts"], dead["reason"]) == (1, "HTTP 400")


def test_private_targets_are_refused_unless_allowed(
    runtime: Runtime, make_user: Callable[..., Account], receiver: Receiver
) -> None:
    from claude_notify.cloud.server.app import create_app

    strict = runtime.settings.replace(webhook_allow_private=False)
    strict_runtime = Runtime(
        settings=strict, engine=runtime.engine, sessions=runtime.sessions, waker=runtime.waker
    )
    user = make_user(plan="pro")
    with TestClient(create_app(runtime=strict_runtime)) as client:
        for url in (
            receiver.url,
            "http://10.0.0.8/x",
            "http://[::1]/x",
            "ftp://example.com/x",
            "https://user:pw@example.com/x",
        ):
            response = client.post(
                "/v1/channels",
                json={"type": "webhook", "config": {"url": url}},
                headers=user.headers,
            )
            assert response.status_code == 422, url
        # A name is checked again when sending: localhost resolves to loopback.
        hook = add_webhook(client, user, f"http://localhost:{receiver.url.split(':')[2]}")
        sent = client.post("/v1/events", json=finished(), headers=user.headers).json()
        dead = settled(client, user, sent["notifications"][0]["id"], "dead")
        assert dead["reason"].startswith("refused: localhost resolves to a non-public address")
        assert hook["enabled"] is True
    assert receiver.count() == 0


def test_provider_urls_are_pinned_to_their_domains(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    for kind, url, ok in [
        ("discord", "https://discord.com/api/webhooks/1/abc", True),
        ("discord", "https://evil.example.com/api/webhooks/1/abc", False),
        ("feishu", "https://open.feishu.cn/open-apis/bot/v2/hook/x", True),
        ("feishu", "https://open.feishu.cn.evil.com/hook", False),
    ]:
        response = client.post(
            "/v1/channels",
            json={"type": kind, "config": {"webhook_url": url}},
            headers=user.headers,
        )
        assert (response.status_code == 201) is ok, (kind, url, response.text)


def test_channel_types_without_an_adapter_dead_letter_with_a_reason(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    with runtime.sessions.begin() as session:  # a type this server has no module for
        session.add(
            Channel(user_id=user.user_id, workspace_id=user.user_id, type="pigeon", config={},
                    rules={"on": ["finished"]})
        )
    sent = client.post("/v1/events", json=finished(), headers=user.headers).json()
    dead = settled(client, user, sent["notifications"][0]["id"], "dead")
    assert dead["reason"] == "this server has no adapter for pigeon channels yet"


# ------------------------------------------------------------------------------------ leases


def _pending_webhook(client: TestClient, user: Account, receiver: Receiver) -> str:
    add_webhook(client, user, receiver.url)
    sent = client.post("/v1/events", json=finished(), headers=user.headers).json()
    notification_id: str = sent["notifications"][0]["id"]
    return notification_id


def test_a_worker_dying_mid_delivery_loses_nothing(
    runtime: Runtime, make_user: Callable[..., Account], receiver: Receiver
) -> None:
    """A claim whose worker vanished after writing its attempt is re-sent once the lease lapses."""
    from claude_notify.cloud.server.app import create_app

    user = make_user(plan="pro")
    quiet = Runtime(
        settings=runtime.settings.replace(embedded_worker=False),
        engine=runtime.engine,
        sessions=runtime.sessions,
        waker=runtime.waker,
    )
    with TestClient(create_app(runtime=quiet)) as api:
        notification_id = _pending_webhook(api, user, receiver)
    # The "dead" worker: claims with a short lease and writes its attempt, then never sends.
    [claim] = engine.claim_due(runtime.sessions, limit=10, lease_s=0.3)
    assert engine.prepare_many(runtime.sessions, [claim], reply_token_ttl_s=60) != []
    assert engine.claim_due(runtime.sessions, limit=10, lease_s=0.3) == []  # still leased
    with TestClient(create_app(runtime=runtime)) as client:
        final = settled(client, user, notification_id, "sent")
    assert receiver.count() == 1
    assert [a["outcome"] for a in final["attempt_log"]] == ["lost", "ok"]
    assert final["attempts"] == 2


def test_a_worker_whose_lease_lapsed_cannot_overwrite_the_result(
    runtime: Runtime, make_user: Callable[..., Account], receiver: Receiver
) -> None:
    from claude_notify.cloud.server.app import create_app

    user = make_user(plan="pro")
    quiet = Runtime(
        settings=runtime.settings.replace(embedded_worker=False),
        engine=runtime.engine,
        sessions=runtime.sessions,
        waker=runtime.waker,
    )
    with TestClient(create_app(runtime=quiet)) as api:
        _pending_webhook(api, user, receiver)
    [slow] = engine.claim_due(runtime.sessions, limit=1, lease_s=0.05)
    [slow_prepared] = engine.prepare_many(runtime.sessions, [slow], reply_token_ttl_s=60)
    wait_for(lambda: engine.claim_due(runtime.sessions, limit=1, lease_s=30), what="re-claim")
    rng = random.Random(0)
    late = engine.settle_many(
        runtime.sessions,
        [(slow_prepared, SendResult(ok=False, detail="x"), 1)],
        settings=runtime.settings,
        rng=rng,
    )
    assert late == ["lost"]
    with runtime.sessions() as session:
        row = session.scalars(select(Delivery)).one()
        assert row.status == "sending"  # still the second worker's
        outcomes = session.scalars(select(DeliveryAttempt.outcome)).all()
    assert outcomes == ["permanent"]


def test_the_status_filter_takes_exactly_the_stored_statuses() -> None:
    assert set(typing.get_args(notifications.StatusName)) == {str(s) for s in DeliveryStatus}


def test_retry_delay_grows_with_jitter_and_respects_retry_after(runtime: Runtime) -> None:
    settings = runtime.settings.replace(retry_delays_s=(5.0, 30.0, 120.0))
    rng = random.Random(1)
    delays = [retry.retry_delay(n, settings, None, rng) for n in (1, 2, 3, 9)]
    assert 3.75 <= delays[0] <= 6.25 and 22.5 <= delays[1] <= 37.5
    assert 90 <= delays[2] <= 150 and 90 <= delays[3] <= 150
    assert retry.retry_delay(1, settings, 600.0, rng) == 600.0
    assert retry.retry_delay(1, settings, 1e12, rng) == retry.MAX_RETRY_AFTER_S


def test_deleting_a_channel_dead_letters_its_pending_deliveries(
    runtime: Runtime, make_user: Callable[..., Account], receiver: Receiver
) -> None:
    from claude_notify.cloud.server.app import create_app

    user = make_user(plan="pro")
    quiet = Runtime(
        settings=runtime.settings.replace(embedded_worker=False),
        engine=runtime.engine,
        sessions=runtime.sessions,
        waker=runtime.waker,
    )
    with TestClient(create_app(runtime=quiet)) as api:
        notification_id = _pending_webhook(api, user, receiver)
        [channel] = api.get("/v1/channels", headers=user.headers).json()
        assert api.delete(f"/v1/channels/{channel['id']}", headers=user.headers).status_code == 204
    with TestClient(create_app(runtime=runtime)) as client:
        dead = settled(client, user, notification_id, "dead")
    assert dead["reason"] == "channel was deleted before delivery"
    with runtime.sessions() as session:
        assert session.scalars(select(Channel)).all() == []
    assert json.dumps(dead)  # serialisable as the API returns it


def test_confirmation_messages_are_rate_limited(
    client: TestClient, smtp_server: Mailbox, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    codes = [
        client.post(
            "/v1/channels",
            json={"type": "email", "config": {"address": f"someone{i}@example.com"}},
            headers=user.headers,
        ).status_code
        for i in range(11)
    ]
    assert codes == [201] * 10 + [429]
    smtp_server.wait(10)


def test_webhooks_connect_to_the_address_that_was_checked(
    client: TestClient, receiver: Receiver, make_user: Callable[..., Account]
) -> None:
    """The name is resolved once, checked, and that address is dialled: no rebinding window."""
    user = make_user(plan="pro")
    port = receiver.url.split(":")[2].split("/")[0]
    add_webhook(client, user, f"http://localhost:{port}/hook")
    client.post("/v1/events", json=finished(), headers=user.headers)
    [call] = receiver.wait(1)
    assert call.headers["host"] == f"localhost:{port}"  # the name, though 127.0.0.1 was dialled


def test_the_outbound_guard_pins_the_resolved_address() -> None:
    import asyncio

    from claude_notify.cloud.server.urlguard import UnsafeURL, check_resolved

    pinned = asyncio.run(check_resolved("http://localhost:8080/x?y=1", allow_private=True))
    assert pinned.url in ("http://127.0.0.1:8080/x?y=1", "http://[::1]:8080/x?y=1")
    assert (pinned.host, pinned.sni) == ("localhost:8080", "localhost")
    with pytest.raises(UnsafeURL, match="non-public"):
        asyncio.run(check_resolved("http://localhost:8080/x", allow_private=False))


class _Recorder(ThreadingHTTPServer):
    """A server on 127.0.0.1 that answers every POST 204 and keeps its request line and headers."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Record)
        self.seen: list[tuple[str, dict[str, str]]] = []
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Record(BaseHTTPRequestHandler):
    server: _Recorder

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def _send_webhook(settings: Settings, url: str, verify: ssl.SSLContext | bool = True
                  ) -> SendResult:
    """One webhook through the worker's client, as the worker sends it."""
    message = Message(
        id=str(uuid.uuid4()),
        channel_type="webhook",
        config={"url": url, "secret": "whsec_" + base64.b64encode(b"k" * 24).decode()},
        kind="event",
        subject="s",
        text="t",
        event=finished(),
    )

    async def send() -> SendResult:
        async with delivery_client(verify=verify) as http:
            return await WebhookChannel(settings, http).send(message)

    return asyncio.run(send())


@pytest.mark.parametrize("cert_names", [("localhost",), ("elsewhere.invalid",)])
def test_https_webhooks_check_the_name_s_certificate_at_the_pinned_address(
    settings: Settings, tls_ca: trustme.CA, cert_names: tuple[str, ...]
) -> None:
    """The pool dials 127.0.0.1 but verifies the certificate against the URL's name (SNI)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert(*cert_names).configure_cert(context)
    server = _Recorder(context)
    client_context = ssl.create_default_context()
    tls_ca.configure_trust(client_context)
    url = f"https://localhost:{server.port}/hook"
    try:
        result = _send_webhook(settings, url, client_context)
    finally:
        server.close()
    if "localhost" in cert_names:
        assert result.ok, result.detail
        assert server.seen[0][1]["host"] == f"localhost:{server.port}"
    else:
        assert not result.ok and result.retryable and not server.seen
        assert "certificate" in result.detail.lower()


def test_deliveries_go_through_the_operator_s_proxy_unless_no_proxy_says_otherwise(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, target = _Recorder(), _Recorder()
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    url = f"http://127.0.0.1:{target.port}/hook"
    try:
        assert _send_webhook(settings, url).ok
        assert [path for path, _ in proxy.seen] == [url] and not target.seen  # absolute-form
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert _send_webhook(settings, url).ok
        assert [path for path, _ in target.seen] == ["/hook"] and len(proxy.seen) == 1
    finally:
        proxy.close()
        target.close()
