"""Odd input never costs a 5xx, and one bad row never holds other users' deliveries.

JSON as Python reads it allows NaN, Infinity, 1e999, integers of any size, lone surrogates and
deep nesting; a date string can be valid and still fall before year 1 once turned to UTC. Each is
refused (422/400) or made harmless at the edge, the same on SQLite and PostgreSQL. A row that
gets past the edge anyway (planted here directly in the database) and cannot be rendered is
dead-lettered with its reason, alone, while the rest of its claimed batch is delivered.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chat_kit import DiscordApp
from cloud_kit import Account, Receiver, wait_for
from fastapi.testclient import TestClient

from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.db.models import Delivery, Event
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings

EVENT = {"type": "finished", "source": "run", "machine_id": "m-1", "status": "failure",
         "command": "make test"}
TG_SECRET = "tg-webhook-secret"  # noqa: S105 - the test server's own
FEISHU_TOKEN = "feishu-token"  # noqa: S105
DISCORD = DiscordApp()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(telegram_webhook_secret=TG_SECRET,
                            feishu_verification_token=FEISHU_TOKEN,
                            discord_public_key=DISCORD.public_key)


@pytest.fixture
def lenient(runtime: Runtime) -> Iterator[TestClient]:
    """The app, answering a crash with its 500 instead of raising it into the test."""
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
        yield client


def post_raw(client: TestClient, path: str, body: str, headers: dict[str, str]) -> Any:
    """POST JSON text as written, lone surrogates (``\\ud800`` escapes) and NaN included."""
    raw = body.encode("utf-8", "surrogatepass")
    return client.post(path, content=raw, headers={**headers, "Content-Type": "application/json"})


def event_body(task_id: str, extra: str) -> str:
    return json.dumps({**EVENT, "task_id": task_id})[:-1] + ", " + extra + "}"


REFUSED_EVENT_FIELDS = {
    "NaN": '"duration_s": NaN',
    "Infinity": '"duration_s": -Infinity',
    "1e999": '"duration_s": 1e999',
    "int too large for a float": '"cpu_time_s": 1' + "0" * 400,
    "exit code past 32 bits": '"exit_code": 4294967296',
    "exit code of 2**63": '"exit_code": 9223372036854775808',
    "peak RSS of 2**64": '"peak_rss_bytes": 18446744073709551616',
    "schema version of 2**63": '"schema_version": 9223372036854775808',
    "start before year 1 in UTC": '"started_at": "0001-01-01T00:00:00+05:00"',
    "end after year 9999 in UTC": '"ended_at": "9999-12-31T23:59:59-05:00"',
}


def test_events_with_numbers_or_dates_no_database_holds_are_refused(
    lenient: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    answers = {name: post_raw(lenient, "/v1/events", event_body(f"t-{i}", extra), user.headers)
               for i, (name, extra) in enumerate(REFUSED_EVENT_FIELDS.items())}
    codes = {name: response.status_code for name, response in answers.items()}
    assert codes == dict.fromkeys(REFUSED_EVENT_FIELDS, 422)
    assert "finite" in answers["NaN"].json()["error"]["message"]
    assert "out of range" in answers["start before year 1 in UTC"].json()["error"]["message"]
    # The edges themselves are fine.
    fine = event_body("t-ok", '"exit_code": -2147483648, "duration_s": 1e300, '
                              '"started_at": "0001-01-01T00:00:00-05:00"')
    assert post_raw(lenient, "/v1/events", fine, user.headers).status_code == 202
    assert lenient.get("/v1/tasks", headers=user.headers).status_code == 200
    # Windows reports a crash as an unsigned 32-bit code: kept, read signed as Windows shows it.
    crash = event_body("t-win", '"exit_code": 3221225477')
    assert post_raw(lenient, "/v1/events", crash, user.headers).status_code == 202
    task = lenient.get("/v1/tasks/t-win", headers=user.headers).json()
    assert task["exit_code"] == 3221225477 - 2**32


def test_lone_surrogates_in_event_text_become_replacement_characters(
    lenient: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    body = event_body("t-s", r'"command": "make \ud83d test", "tail": "x\udfff"')
    assert post_raw(lenient, "/v1/events", body, user.headers).status_code == 202
    task = lenient.get("/v1/tasks/t-s", headers=user.headers)
    assert task.status_code == 200, task.text
    assert task.json()["cmd"] == "make \ufffd test"


def test_channel_config_a_response_cannot_carry_is_refused(
    lenient: TestClient, make_user: Callable[..., Account]
) -> None:
    """On SQLite a lone surrogate in a webhook URL was stored, and every later listing of the
    user's channels failed to encode it (500)."""
    user = make_user(plan="pro")
    for config in (
        r'{"url": "https://example.com/\ud800"}',
        r'{"url": "https://example.com/", "\udc00": 1}',
        '{"url": "https://example.com/", "n": NaN}',
        '{"url": "https://example.com/", "n": 18446744073709551616}',
        '{"url": "https://example.com/", "n": ' + "[" * 500 + "]" * 500 + "}",
    ):
        body = '{"type": "webhook", "config": ' + config + "}"
        response = post_raw(lenient, "/v1/channels", body, user.headers)
        assert response.status_code == 422, (config[:60], response.text)
    listed = lenient.get("/v1/channels", headers=user.headers)
    assert (listed.status_code, listed.json()) == (200, [])


def test_templates_nested_past_pythons_limits_are_refused(
    lenient: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    for template in (
        "{% if host %}" * 150 + "x" + "{% endif %}" * 150,  # Python: too many indentation levels
        "{{ " + "(" * 1000 + "host" + ")" * 1000 + " }}",  # Jinja's parser: recursion
        "{{ " + "not " * 900 + "host }}",
        "{{ host" + "|upper" * 600 + " }}",
        "{{ " + "host if host else " * 200 + "host }}",  # Python: too many parentheses
    ):
        response = lenient.post("/v1/templates/preview", json={"template": template[:4000]},
                                headers=user.headers)
        assert response.status_code == 422, (template[:40], response.text)
        assert "nest" in response.json()["error"]["message"]
    nested = "{% if host %}" * 30 + "{{ host | upper | trim }}" + "{% endif %}" * 30
    response = lenient.post("/v1/templates/preview", json={"template": nested},
                            headers=user.headers)
    assert response.status_code == 200, response.text


DEEP = "[" * 100_000 + "]" * 100_000
HOSTILE_JSON = {
    "deeply nested": '{"update_id": 1, "message": ' + DEEP + "}",
    "moderately nested": '{"update_id": 1, "message": ' + "[" * 900 + "]" * 900 + "}",
    "lone surrogate": r'{"update_id": 1, "message": {"text": "/start \ud800", "chat": {"id": 1,'
                      r' "title": "\udfff"}, "from": {"id": 2}}}',
    "huge chat id": '{"update_id": 1, "message": {"text": "/start X", "chat": {"id": 1'
                    + "0" * 30 + '}, "from": {"id": 2}}}',
    "NaN": '{"update_id": NaN}',
}


@pytest.mark.parametrize("name", list(HOSTILE_JSON))
def test_inbound_webhooks_refuse_hostile_json_without_a_5xx(
    lenient: TestClient, name: str
) -> None:
    body = HOSTILE_JSON[name]
    raw = body.encode("utf-8", "surrogatepass")
    telegram = lenient.post("/v1/telegram/webhook", content=raw,
                            headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
    feishu = lenient.post("/v1/feishu/events", content=raw)
    discord = lenient.post("/v1/discord/interactions", content=raw, headers=DISCORD.headers(raw))
    assert (telegram.status_code, feishu.status_code, discord.status_code) == (400, 400, 400)


# --------------------------------------------------------------------------- one bad row


def test_a_row_that_cannot_be_rendered_is_dead_alone_and_its_batch_is_delivered(
    runtime: Runtime, make_user: Callable[..., Account], receiver: Receiver
) -> None:
    users = [make_user(plan="pro") for _ in range(3)]
    quiet = Runtime(settings=runtime.settings.replace(embedded_worker=False),
                    engine=runtime.engine, sessions=runtime.sessions, waker=runtime.waker)
    ids = []
    with TestClient(create_app(runtime=quiet)) as client:  # queued, not yet delivered
        for i, user in enumerate(users):
            made = client.post("/v1/channels", headers=user.headers,
                               json={"type": "webhook", "config": {"url": receiver.url},
                                     "rules": {"on": ["finished"]}})
            assert made.status_code == 201, made.text
            sent = client.post("/v1/events", json={**EVENT, "task_id": f"t-{i}"},
                               headers=user.headers)
            assert sent.status_code == 202, sent.text
            ids.append(sent.json()["notifications"][0]["id"])
    # Past the edge by another road (an older server, a bug): JSON can hold this integer, no
    # float can, so the headline's duration raises while rendering.
    with runtime.sessions.begin() as session:
        row = session.get(Delivery, uuid.UUID(ids[1]))
        assert row is not None and row.status == "pending"
        event = session.get(Event, row.event_row_id)
        assert event is not None
        event.payload = {**event.payload, "duration_s": 10**400}

    with TestClient(create_app(runtime=runtime)) as client:  # its worker claims all three
        def status(i: int) -> dict[str, Any]:
            response = client.get(f"/v1/notifications/{ids[i]}", headers=users[i].headers)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        wait_for(lambda: [status(i)["status"] for i in range(3)] == ["sent", "dead", "sent"],
                 timeout=30, what="the good rows sent and the bad one dead")
        dead = status(1)
        assert dead["attempts"] == 1
        assert dead["reason"].startswith("cannot be prepared: OverflowError"), dead["reason"]
    delivered = {json.loads(r.body).get("id") for r in receiver.received}
    assert ids[1] not in delivered and receiver.count() == 2
