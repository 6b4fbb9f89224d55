"""Schemathesis against the app's own OpenAPI schema: whatever it sends, never a 5xx.

Every operation is called with generated (mostly invalid) input, authenticated as a user who
owns a task, a channel and a notification, so the handlers past validation run too. The inbound
webhooks (Telegram, Discord, Feishu: outside the schema) and the event fields get Hypothesis's
own JSON: NaN, infinities, integers past 64 bits, lone surrogates, nesting. Each run is bounded
by its number of examples and their size, never by a deadline.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from chat_kit import DiscordApp
from cloud_kit import Account
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.runtime import Runtime


@pytest.fixture
def fuzz_account(runtime: Runtime, make_user: Callable[..., Account]) -> Account:
    return make_user(plan="pro")


@pytest.fixture
def api_schema(runtime: Runtime) -> Iterator[Any]:
    quiet = Runtime(
        settings=runtime.settings.replace(embedded_worker=False),
        engine=runtime.engine,
        sessions=runtime.sessions,
        waker=runtime.waker,
    )
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(runtime=quiet))
    # Its own group-commit writers hold sessions on the shared engine: stop them, or their
    # connections outlive the test and are garbage-collected open in a later one.
    quiet.writes.close()


def test_no_input_makes_the_server_fail(api_schema: Any, fuzz_account: Account) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    seen: dict[str, set[int]] = {}
    for operation in operations:
        label = operation.label

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,  # ~40 operations: 1,000 calls per database (50 took ~30 s each)
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def call(case: Any) -> None:
            response = case.call(headers=fuzz_account.headers)
            seen.setdefault(label, set()).add(response.status_code)  # noqa: B023 - runs in this turn
            case.validate_response(response, checks=[not_a_server_error])

        call()
    # The fuzzing reached the handlers, not only the validators.
    assert {op for op, codes in seen.items() if codes & {200, 201, 202, 204}} >= {
        "POST /v1/events",
        "POST /v1/tasks",
        "GET /v1/tasks",
        "GET /v1/notifications",
    }


# --------------------------------------------------------------------------- hostile JSON

TG_SECRET = "tg-secret"  # noqa: S105 - the test server's own
FEISHU_TOKEN = "feishu-token"  # noqa: S105
DISCORD = DiscordApp()
BOUNDED = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck),
                   derandomize=True, database=None)

odd_text = st.text(  # lone surrogates and NUL are rare in st.characters(): asked for here
    st.sampled_from(["\ud800", "\udfff", "\x00", "\u2028", "😀"]) | st.characters(), max_size=12)
odd_scalars = (
    st.none() | st.booleans() | odd_text
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30])
    | st.floats(allow_nan=True, allow_infinity=True)
)
odd_json = st.recursive(
    odd_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=16,
)
ids = st.integers(min_value=-(2**64), max_value=2**64) | odd_scalars


def telegram_update(text: Any, chat_id: Any, title: Any, sender: Any) -> dict[str, Any]:
    return {"update_id": 1, "message": {"message_id": 1, "text": text, "date": 0,
                                        "chat": {"id": chat_id, "type": "private", "title": title},
                                        "from": {"id": sender, "is_bot": False}}}


provider_bodies = st.one_of(
    odd_json,
    st.builds(telegram_update, odd_text.map(lambda t: "/start " + t) | odd_json, ids, odd_json,
              ids),
    st.builds(lambda event, kind: {"schema": "2.0", "header": {"token": FEISHU_TOKEN,
                                                                "event_type": kind},
                                   "event": event},
              odd_json, st.just("im.message.receive_v1") | odd_text),
    st.builds(lambda content, open_id: {
        "schema": "2.0",
        "header": {"token": FEISHU_TOKEN, "event_type": "im.message.receive_v1", "event_id": "e"},
        "event": {"sender": {"sender_type": "user", "sender_id": {"open_id": open_id}},
                  "message": {"message_type": "text", "chat_type": "p2p", "chat_id": "oc_1",
                              "content": content}}},
        odd_json.map(lambda v: json.dumps({"text": v})) | odd_text, odd_text),
    st.builds(lambda kind, data: {"id": "1", "type": kind, "token": "t", "data": data},
              st.integers(min_value=1, max_value=5) | odd_scalars, odd_json),
)


@contextlib.contextmanager
def _hostile_app(runtime: Runtime) -> Iterator[TestClient]:
    inbound = runtime.settings.replace(
        embedded_worker=False, telegram_webhook_secret=TG_SECRET,
        feishu_verification_token=FEISHU_TOKEN, discord_public_key=DISCORD.public_key)
    hostile = Runtime(settings=inbound, engine=runtime.engine, sessions=runtime.sessions,
                      waker=runtime.waker)
    try:
        with TestClient(create_app(runtime=hostile), raise_server_exceptions=False) as client:
            yield client
    finally:
        hostile.writes.close()  # as in api_schema: no writer outlives the test


def test_inbound_webhooks_never_fail_on_hostile_json(runtime: Runtime) -> None:
    seen: set[int] = set()
    with _hostile_app(runtime) as client:

        @given(body=provider_bodies)
        @example(body="[" * 100_000 + "]" * 100_000)  # raw text: deeper than json can read
        @example(body=json.loads("[" * 40 + "]" * 40))
        @BOUNDED
        def call(body: Any) -> None:
            raw = (body if isinstance(body, str) and body.startswith("[[")
                   else json.dumps(body, allow_nan=True)).encode()
            answers = [
                client.post("/v1/telegram/webhook", content=raw,
                            headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}),
                client.post("/v1/feishu/events", content=raw),
                client.post("/v1/discord/interactions", content=raw,
                            headers=DISCORD.headers(raw)),
            ]
            for response in answers:
                seen.add(response.status_code)
                assert response.status_code < 500, (response.request.url, raw[:200])

        call()
    assert 200 in seen and 400 in seen  # past the guard, and stopped by it


EVENT_FIELDS = ("exit_code", "duration_s", "cpu_time_s", "peak_rss_bytes", "schema_version",
                "started_at", "ended_at", "command", "tail", "title", "message", "signal")
dates = st.builds(lambda y, tz: f"{y:04d}-12-31T23:59:59{tz}", st.sampled_from([1, 2024, 9999]),
                  st.sampled_from(["Z", "+05:00", "-05:00", "+23:59"]))


def test_events_with_hostile_fields_are_accepted_or_refused_never_failed(
    runtime: Runtime, fuzz_account: Account
) -> None:
    seen: set[int] = set()
    with _hostile_app(runtime) as client:

        @given(field=st.sampled_from(EVENT_FIELDS), value=odd_scalars | dates | odd_json)
        @BOUNDED
        def call(field: str, value: Any) -> None:
            event = {"type": "finished", "source": "run", "task_id": "fuzz", "machine_id": "m",
                     "status": "failure", field: value}
            response = client.post("/v1/events", content=json.dumps(event, allow_nan=True),
                                   headers={**fuzz_account.headers,
                                            "Content-Type": "application/json"})
            seen.add(response.status_code)
            assert response.status_code in (202, 422), (field, value, response.text)
            assert client.get("/v1/tasks", headers=fuzz_account.headers).status_code == 200

        call()
    assert seen == {202, 422}
