"""Ingest: idempotent events, task registration and listing, one error shape, strict limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cloud_kit import Account
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from claude_notify.cloud.server.db.models import Delivery, Event
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import TaskEvent


def event(task_id: str = "t-1", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "finished",
        "source": "run",
        "task_id": task_id,
        "machine_id": "m-1",
        "status": "success",
        "exit_code": 0,
        "command": "make test",
    }
    return TaskEvent.from_dict({**base, **fields}).to_dict()


def test_an_event_for_an_unknown_task_creates_it(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    sent = client.post(
        "/v1/events",
        json=event("hook-1", session_id="s-9", status="failure", exit_code=2),
        headers=user.headers,
    )
    assert sent.status_code == 202, sent.text
    assert sent.json()["task_id"] == "hook-1"
    task = client.get("/v1/tasks/hook-1", headers=user.headers).json()
    assert task["status"] == "failure"
    assert task["exit_code"] == 2
    assert task["session_id"] == "s-9"
    assert task["cmd"] == "make test"
    assert task["finished_at"] is not None


def test_every_event_type_of_the_schema_is_accepted(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    for kind, status in [
        ("started", "running"),
        ("progress", "running"),
        ("match", "running"),
        ("needs_input", "needs_input"),
        ("finished", "success"),
    ]:
        response = client.post(
            "/v1/events",
            json=event(
                "all-types", type=kind, status=status, match="ERROR" if kind == "match" else None
            ),
            headers=user.headers,
        )
        assert response.status_code == 202, (kind, response.text)
    assert client.get("/v1/tasks/all-types", headers=user.headers).json()["status"] == "success"


def test_unknown_fields_from_newer_clients_are_ignored(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    body = {**event(), "schema_version": 7, "gpu_seconds": 12.5}
    assert client.post("/v1/events", json=body, headers=user.headers).status_code == 202


def test_the_same_event_twice_is_one_event_and_one_notification(
    client: TestClient,
    runtime: Runtime,
    make_user: Callable[..., Account],
    verified_email: Callable[..., str],
) -> None:
    user = make_user()
    verified_email(client, user, "dev@example.com")
    body = event("dup")
    first = client.post("/v1/events", json=body, headers=user.headers)
    second = client.post("/v1/events", json=body, headers=user.headers)
    assert first.status_code == second.status_code == 202
    assert "idempotency-replay" not in first.headers
    assert second.headers["idempotency-replay"] == "true"
    assert second.json()["duplicate"] is True
    assert [n["id"] for n in second.json()["notifications"]] == [
        n["id"] for n in first.json()["notifications"]
    ]
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 1
        kinds = session.scalars(select(Delivery.kind)).all()
    assert sorted(kinds) == ["event", "verify"]


def test_post_tasks_follows_the_spec(client: TestClient, make_user: Callable[..., Account]) -> None:
    user = make_user()
    created = client.post(
        "/v1/tasks",
        json={
            "cmd": "python train.py",
            "session_id": "abc",
            "notify_on": "exit",
            "channels": ["email", "tg"],
        },
        headers=user.headers,
    )
    assert created.status_code == 201
    task_id = created.json()["task_id"]
    task = client.get(f"/v1/tasks/{task_id}", headers=user.headers).json()
    assert task["channels"] == ["email", "telegram"]
    assert task["status"] == "running"
    done = client.post(
        "/v1/events", json=event(task_id, status="failure", exit_code=1), headers=user.headers
    )
    assert done.json()["task_id"] == task_id
    task = client.get(f"/v1/tasks/{task_id}", headers=user.headers).json()
    assert (task["status"], task["cmd"]) == ("failure", "python train.py")


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"cmd": "x", "channels": ["pigeon"]}, "unknown channel type"),
        ({"cmd": "x", "notify_on": "sometimes"}, "notify_on"),
        ({"cmd": "x", "colour": "red"}, "colour"),
        ({}, "cmd"),
    ],
)
def test_post_tasks_is_strict(
    client: TestClient, make_user: Callable[..., Account], body: dict[str, Any], fragment: str
) -> None:
    response = client.post("/v1/tasks", json=body, headers=make_user().headers)
    assert response.status_code == 422
    assert fragment in str(response.json()["error"])


def test_listing_paginates_and_filters(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    for i in range(7):
        status = "failure" if i % 3 == 0 else "success"
        body = event(f"task-{i}", status=status, session_id="a" if i < 4 else "b")
        assert client.post("/v1/events", json=body, headers=user.headers).status_code == 202
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/tasks", params=params, headers=user.headers).json()
        seen += [t["task_id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"task-{i}" for i in range(7)]
    assert len(seen) == len(set(seen))
    failed = client.get("/v1/tasks", params={"status": "failure"}, headers=user.headers).json()
    assert sorted(t["task_id"] for t in failed["items"]) == ["task-0", "task-3", "task-6"]
    session_b = client.get("/v1/tasks", params={"session_id": "b"}, headers=user.headers).json()
    assert len(session_b["items"]) == 3
    bad = client.get("/v1/tasks", params={"cursor": "not-a-cursor"}, headers=user.headers)
    assert bad.status_code == 422


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"type": "finished"}, 422, "source"),
        ({**event(), "type": "exploded"}, 422, "type"),
        ({**event(), "exit_code": "zero"}, 422, "exit_code"),
        ({**event(), "ended_at": "yesterday"}, 422, "ended_at"),
        ({**event(), "task_id": "x" * 129}, 422, "task_id"),
        ({**event(), "tail": "x" * 70_000}, 413, "tail"),
        ([1, 2], 422, ""),
    ],
)
def test_bad_events_get_a_clear_4xx(
    client: TestClient, make_user: Callable[..., Account], body: Any, status: int, fragment: str
) -> None:
    response = client.post("/v1/events", json=body, headers=make_user().headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"code", "message"}
    assert fragment in error["message"]


def test_oversized_and_malformed_bodies(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    headers = make_user().headers
    huge = client.post(
        "/v1/events",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={**headers, "content-type": "application/json"},
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Any:
        for _ in range(40):
            yield b" " * 65_536

    streamed = client.post(
        "/v1/events", content=chunks(), headers={**headers, "content-type": "application/json"}
    )
    assert streamed.status_code == 413
    broken = client.post(
        "/v1/events", content=b"{not json", headers={**headers, "content-type": "application/json"}
    )
    assert broken.status_code == 422
    assert broken.json()["error"]["code"] == "invalid_request"


def test_framework_errors_use_the_same_shape(client: TestClient) -> None:
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "Not Found"}}
    wrong_method = client.delete("/v1/events")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_free_plan_keeps_a_10_kb_tail_and_pro_keeps_it_all(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    tail = "".join(f"line {i}\n" for i in range(4000))  # ~35 KB
    for plan in ("free", "pro"):
        user = make_user(plan=plan)
        client.post("/v1/events", json=event(f"tail-{plan}", tail=tail), headers=user.headers)
        with runtime.sessions() as session:
            stored = session.scalars(select(Event).where(Event.user_id == user.user_id)).one()
        kept = stored.payload["tail"]
        if plan == "free":
            assert len(kept.encode()) <= 10 * 1024
            assert tail.endswith(kept)
        else:
            assert kept == tail


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_nul_characters_never_reach_the_database(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    sent = client.post(
        "/v1/events", json=event("nul", command="a\x00b", tail="x\x00y"), headers=user.headers
    )
    assert sent.status_code == 202
    with runtime.sessions() as session:
        stored = session.scalars(select(Event).where(Event.user_id == user.user_id)).one()
    assert (stored.payload["command"], stored.payload["tail"]) == ("a\ufffdb", "x\ufffdy")
    refused = client.post("/v1/tasks", json={"cmd": "a\x00b"}, headers=user.headers)
    assert refused.status_code == 422
    assert "NUL" in refused.json()["error"]["message"]
