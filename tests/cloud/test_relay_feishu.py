"""Commands from a Feishu app bot through the real app, worker and database (SQLite and
PostgreSQL), the Feishu custom-bot stand-in receiving notifications and answers: events are
encrypted and signed in the test with its own AES-CBC and SHA-256 code, ``/link CODE`` in the
direct chat records the sender's open_id, ``/run`` from it is queued for the latest notified
session; forged, tampered or unsigned events, strangers and group chats queue nothing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chat_kit import FeishuApp, feishu_encrypt, feishu_message
from cloud_kit import Account, register_agent, wait_for
from fastapi.testclient import TestClient
from standins.feishu import APP_ID, APP_SECRET, FeishuStandIn
from standins.kit import event, feishu, provider_settings

from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.relay.feishu import UNSIGNED_RUN
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

__all__ = ["feishu"]
TOKEN = "v3rification-T0ken"  # noqa: S105 - the test app's verification token
KEY = "encrypt-key-Th1s"
GUESS = "a-guessed-token"
OWNER, STRANGER = "ou_owner0000000000000000000000001", "ou_stranger00000000000000000000002"


@pytest.fixture
def settings(settings: Settings, feishu: FeishuStandIn) -> Settings:
    return settings.replace(feishu_verification_token=TOKEN, feishu_encrypt_key=KEY,
                            **provider_settings(feishu=feishu.base_url))


def _send(client: TestClient, app: FeishuApp, payload: dict[str, Any], **how: Any) -> Any:
    body, headers = app.request(payload, **how)
    return client.post("/v1/feishu/events", content=body, headers=headers)


class Linked:
    def __init__(self, client: TestClient, user: Account, standin: FeishuStandIn) -> None:
        self.client, self.user, self.standin = client, user, standin
        self.app = FeishuApp(TOKEN, KEY)
        made = client.post("/v1/channels", json={"type": "feishu",
                                                 "config": {"webhook_url": standin.url()}},
                           headers=user.headers)
        assert made.status_code == 201, made.text
        self.channel_id = made.json()["id"]
        code = client.post(f"/v1/channels/{self.channel_id}/link", headers=user.headers)
        assert code.status_code == 201, code.text
        self.command = code.json()["command"]
        assert self.command == f"/link {code.json()['code']}"
        register_agent(client, user, "machine-1234567")

    def say(self, text: str, **how: Any) -> int:
        signed, tamper, at = how.pop("signed", True), how.pop("tamper", False), how.pop("at", None)
        status: int = _send(self.client, self.app, feishu_message(text, token=TOKEN, **how),
                            signed=signed, tamper=tamper, at=at).status_code
        return status

    def link(self) -> None:
        before = self.standin.count()
        assert self.say(self.command, open_id=OWNER) == 200
        assert "Linked" in self.answer(before + 1)

    def answer(self, n: int) -> str:
        """The ``n``-th message the custom bot received."""
        self.standin.wait(n)
        text: str = self.standin.accepted()[n - 1].displayed["text"]
        return text

    def notify(self, session_id: str) -> None:
        before = self.standin.count()
        body = event(task_id=uuid.uuid4().hex, session_id=session_id, machine_id="machine-1234567")
        body.pop("event_id")
        sent = self.client.post("/v1/events", json=body, headers=self.user.headers)
        [planned] = sent.json()["notifications"]
        self.standin.wait(before + 1)
        wait_for(lambda: self.client.get(f"/v1/notifications/{planned['id']}",
                                         headers=self.user.headers).json()["status"] == "sent",
                 what="the notification to be recorded as sent")

    def audit(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.client.get("/v1/audit", headers=self.user.headers).json()
        return rows

    def command_row(self, command_id: str) -> dict[str, Any]:
        row: dict[str, Any] = self.client.get(f"/v1/commands/{command_id}",
                                              headers=self.user.headers).json()
        return row


@pytest.fixture
def linked(client: TestClient, make_user: Callable[..., Account],
           feishu: FeishuStandIn) -> Linked:
    return Linked(client, make_user(plan="pro"), feishu)


def test_the_url_check_is_answered_with_its_challenge(client: TestClient) -> None:
    check = {"challenge": "ajls384kdjx98XX", "token": TOKEN, "type": "url_verification"}
    app = FeishuApp(TOKEN, KEY)
    answered = _send(client, app, check, signed=False)  # Feishu does not sign the URL check
    assert (answered.status_code, answered.json()) == (200, {"challenge": "ajls384kdjx98XX"})
    assert _send(client, app, {**check, "token": "guess"}, signed=False).status_code == 403
    wrong_key = FeishuApp(TOKEN, "another-key")
    assert _send(client, wrong_key, check, signed=False).status_code == 400


def test_link_then_run_in_the_direct_chat_goes_to_the_latest_session(linked: Linked) -> None:
    linked.link()
    config = linked.client.get(f"/v1/channels/{linked.channel_id}",
                               headers=linked.user.headers).json()["config"]
    assert config["feishu_open_id"] == OWNER
    linked.notify("session-a")
    linked.notify("session-b")  # messages 2 and 3
    assert linked.say("/run make test", open_id=OWNER) == 200
    [row] = linked.audit()
    assert (row["outcome"], row["source"], row["actor"]) == ("queued", "feishu",
                                                             f"feishu:{OWNER}")
    queued = linked.command_row(row["command_id"])
    assert (queued["session_id"], queued["command"], queued["kind"]) == ("session-b",
                                                                         "make test", "shell")
    assert "Queued on machine-1234: make test" in linked.answer(4)


def test_forged_tampered_and_unsigned_events_queue_nothing(linked: Linked) -> None:
    linked.link()
    linked.notify("session-a")
    assert linked.say("/run ./next.sh", open_id=OWNER, signed=False) == 401
    assert linked.say("/run ./next.sh", open_id=OWNER, tamper=True) == 401
    forged = FeishuApp(TOKEN, "not-the-key")  # signs and encrypts with another key
    assert _send(linked.client, forged, feishu_message("/run ./x", token=TOKEN,
                                                       open_id=OWNER)).status_code == 401
    wrong_token = feishu_message("/run ./next.sh", token=GUESS, open_id=OWNER)
    assert _send(linked.client, linked.app, wrong_token).status_code == 403
    # a plain body signed correctly but not JSON, and an encrypt value that is not AES data
    for raw in (b"not json", json.dumps({"encrypt": "bm90IGFlcw=="}).encode()):
        stamp, nonce = str(int(time.time())), "n0nce"
        digest = hashlib.sha256((stamp + nonce + KEY).encode() + raw).hexdigest()
        sent = linked.client.post("/v1/feishu/events", content=raw, headers={
            "X-Lark-Request-Timestamp": stamp, "X-Lark-Request-Nonce": nonce,
            "X-Lark-Signature": digest})
        assert sent.status_code == 400
    assert linked.audit() == []
    assert linked.standin.count() == 2  # "linked" and the notification


def test_a_signed_event_is_good_for_five_minutes(linked: Linked) -> None:
    """An event captured days ago (its dedup row long swept) or dated ahead runs nothing."""
    linked.link()
    linked.notify("session-a")
    day = 86400.0
    for at in (time.time() - 3 * day, time.time() - 6 * 60, time.time() + 6 * 60):
        assert linked.say("/run ./again.sh", open_id=OWNER, at=at) == 401
    raw = json.dumps({"encrypt": feishu_encrypt(KEY, b"{}")}).encode()
    for stamp in ("", "soon", "1e400"):
        digest = hashlib.sha256((stamp + "n0nce" + KEY).encode() + raw).hexdigest()
        sent = linked.client.post("/v1/feishu/events", content=raw, headers={
            "X-Lark-Request-Timestamp": stamp, "X-Lark-Request-Nonce": "n0nce",
            "X-Lark-Signature": digest})
        assert sent.status_code == 401, stamp
    assert linked.audit() == []
    assert linked.say("/run ./again.sh", open_id=OWNER, at=time.time() - 60) == 200
    assert [a["outcome"] for a in linked.audit()] == ["queued"]


def test_strangers_and_group_chats_are_refused(linked: Linked) -> None:
    linked.link()
    linked.notify("session-a")
    assert linked.say("/run ./next.sh", open_id=STRANGER) == 200
    assert linked.audit() == []  # linked to no account: nothing to audit it under
    assert linked.say("@_user_1 /run ./next.sh", open_id=OWNER, chat_type="group") == 200
    [row] = linked.audit()
    assert (row["outcome"], row["command_id"]) == ("refused", None)
    assert "direct chat" in row["reason"] and row["command"] == "./next.sh"
    assert "Not run" in linked.answer(3)
    assert linked.say("/run ./next.sh", open_id=OWNER, sender_type="app") == 200
    assert linked.say("just chatting", open_id=OWNER) == 200
    assert len(linked.audit()) == 1
    assert linked.standin.count() == 3


def test_a_link_code_sent_in_a_group_links_nothing(linked: Linked) -> None:
    assert linked.say(linked.command, open_id=STRANGER, chat_type="group") == 200
    assert linked.say("/run ./next.sh", open_id=STRANGER) == 200
    config = linked.client.get(f"/v1/channels/{linked.channel_id}",
                               headers=linked.user.headers).json()["config"]
    assert "feishu_open_id" not in config
    linked.link()  # still unused: the owner can use it in the direct chat


def test_a_redelivered_event_is_queued_once(linked: Linked) -> None:
    linked.link()
    linked.notify("session-a")
    again = feishu_message("/run make test", token=TOKEN, open_id=OWNER, event_id="ev-1")
    for _ in range(2):
        assert _send(linked.client, linked.app, again).status_code == 200
    assert [a["outcome"] for a in linked.audit()] == ["queued"]


def test_a_redelivery_to_another_replica_is_queued_once(linked: Linked, settings: Settings) -> None:
    """Two API processes on one database: the event each receives is one command, not two."""
    linked.link()
    linked.notify("session-b")
    again = feishu_message("/run make test", token=TOKEN, open_id=OWNER, event_id="ev-2")
    with _client(settings) as other:
        assert _send(linked.client, linked.app, again).status_code == 200
        assert _send(other, linked.app, again).status_code == 200
    assert [a["outcome"] for a in linked.audit()] == ["queued"]


@contextlib.contextmanager
def _client(settings: Settings) -> Iterator[TestClient]:
    runtime = Runtime.build(settings)
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            yield client
    finally:
        runtime.close()


def test_without_an_encrypt_key_plain_events_need_the_token(
    settings: Settings, make_user: Callable[..., Account], feishu: FeishuStandIn
) -> None:
    with _client(settings.replace(feishu_encrypt_key=None)) as client:
        user = make_user(plan="pro")
        made = client.post("/v1/channels", json={"type": "feishu",
                                                 "config": {"webhook_url": feishu.url()}},
                           headers=user.headers).json()
        code = client.post(f"/v1/channels/{made['id']}/link", headers=user.headers).json()
        plain = FeishuApp(TOKEN)
        assert _send(client, plain, feishu_message(code["command"], token=TOKEN,
                                                   open_id=OWNER)).status_code == 200
        feishu.wait(1)
        stranger = FeishuApp(GUESS)
        assert _send(client, stranger, feishu_message("/run ls", token=GUESS,
                                                      open_id=OWNER)).status_code == 403
        encrypted = {"encrypt": feishu_encrypt(KEY, b"{}")}
        assert client.post("/v1/feishu/events", json=encrypted).status_code == 400
        config = client.get(f"/v1/channels/{made['id']}", headers=user.headers).json()["config"]
        assert config["feishu_open_id"] == OWNER


def test_without_an_encrypt_key_run_is_refused(
    settings: Settings, make_user: Callable[..., Account], feishu: FeishuStandIn
) -> None:
    """The verification token is static and in every body: whoever learns it could write any
    sender's open_id. Only a signature (the Encrypt Key) lets a message run a command."""
    plain = settings.replace(feishu_encrypt_key=None, feishu_app_id=APP_ID,
                             feishu_app_secret=APP_SECRET)
    with _client(plain) as client:
        linked = Linked(client, make_user(plan="pro"), feishu)
        linked.app = FeishuApp(TOKEN)
        assert linked.say(linked.command, open_id=OWNER) == 200
        wait_for(lambda: len(feishu.said()) == 1, what="the link answer in the chat")
        linked.notify("session-a")
        assert linked.say("/run make test", open_id=OWNER) == 200
        wait_for(lambda: len(feishu.said()) == 2, what="the refusal in the chat")
        assert feishu.said()[1]["text"] == UNSIGNED_RUN
        assert linked.audit() == []


def test_off_without_a_verification_token(settings: Settings) -> None:
    with _client(settings.replace(feishu_verification_token=None)) as client:
        check = {"challenge": "c", "token": TOKEN, "type": "url_verification"}
        assert client.post("/v1/feishu/events", json=check).status_code == 404


def test_group_chats_count_once_the_owner_allows_them(linked: Linked) -> None:
    linked.link()
    linked.notify("session-a")
    allow = {"webhook_url": linked.standin.url(), "allow_group_replies": True}
    patched = linked.client.patch(f"/v1/channels/{linked.channel_id}", json={"config": allow},
                                  headers=linked.user.headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["config"]["feishu_open_id"] == OWNER  # the link is kept
    assert linked.say("@_user_1 /run make test", open_id=OWNER, chat_type="group") == 200
    assert linked.say("@_user_1 /run make test", open_id=STRANGER, chat_type="group") == 200
    [row] = linked.audit()  # still only the owner's message counts
    assert (row["outcome"], row["command"]) == ("queued", "make test")
    bad = linked.client.patch(f"/v1/channels/{linked.channel_id}",
                              json={"config": {**allow, "allow_group_replies": "yes"}},
                              headers=linked.user.headers)
    assert bad.status_code == 422


def test_with_the_apps_credentials_answers_go_into_the_chat(
    settings: Settings, make_user: Callable[..., Account], feishu: FeishuStandIn
) -> None:
    app_settings = settings.replace(feishu_app_id=APP_ID, feishu_app_secret=APP_SECRET)
    with _client(app_settings) as client:
        linked = Linked(client, make_user(plan="pro"), feishu)
        assert linked.say(linked.command, open_id=OWNER) == 200
        wait_for(lambda: len(feishu.said()) == 1, what="the link answer in the chat")
        linked.notify("session-a")  # the notification still goes through the custom bot
        assert linked.say("/run make test", open_id=OWNER) == 200
        assert linked.say("/run make test", open_id=STRANGER) == 200
        assert linked.say("@_user_1 /run make test", open_id=STRANGER, chat_type="group") == 200
        wait_for(lambda: len(feishu.said()) == 3, what="the answers in the chat")
        said = feishu.said()
        assert [s["chat_id"] for s in said] == ["oc_5ad11d72b830411d72b836c20"] * 3
        assert said[0]["text"].startswith("Linked")
        assert said[1]["text"] == "Queued on machine-1234: make test"
        assert said[2]["text"] == "Not run: this account is not linked to claude-notify."
        assert [a["outcome"] for a in linked.audit()] == ["queued"]
        custom_bot = [r for r in feishu.accepted() if "/bot/v2/hook/" in r.path]
        assert len(custom_bot) == 1  # only the notification
        tokens = [r for r in feishu.requests if r.path.endswith("/tenant_access_token/internal")]
        assert len(tokens) == 1  # cached between answers


def test_a_refused_app_secret_loses_the_answer_not_the_command(
    settings: Settings, make_user: Callable[..., Account], feishu: FeishuStandIn
) -> None:
    wrong = settings.replace(feishu_app_id=APP_ID, feishu_app_secret=GUESS)
    with _client(wrong) as client:
        linked = Linked(client, make_user(plan="pro"), feishu)
        assert linked.say(linked.command, open_id=OWNER) == 200
        linked.notify("session-a")
        assert linked.say("/run make test", open_id=OWNER) == 200
        assert [a["outcome"] for a in linked.audit()] == ["queued"]
        wait_for(lambda: len([r for r in feishu.requests if r.status == 400]) == 2,
                 what="both token requests refused")
        assert feishu.said() == []
