"""Task logs: encrypted at rest with AES-256-GCM, capped by plan, watched by regex rules."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cloud_kit import Account, Receiver
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.db.models import TaskLogChunk
from claude_notify.cloud.server.logcrypt import new_key
from claude_notify.cloud.server.runtime import Runtime


def chain(*chunks: bytes) -> str:
    digest = hashlib.sha256(b"").digest()
    for chunk in chunks:
        digest = hashlib.sha256(digest + chunk).digest()
    return digest.hex()


def start(client: TestClient, user: Account) -> str:
    response = client.post("/v1/tasks", json={"cmd": "make"}, headers=user.headers)
    task_id: str = response.json()["task_id"]
    return task_id


def append(client: TestClient, user: Account, task_id: str, data: bytes) -> dict[str, object]:
    response = client.post(
        f"/v1/tasks/{task_id}/log",
        content=data,
        headers={**user.headers, "content-type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_logs_are_stored_encrypted_and_read_back(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    task_id = start(client, user)
    parts = [b"building secret-sauce\n", b"linking\n", "done ✓\n".encode()]
    for part in parts:
        append(client, user, task_id, part)
    got = client.get(f"/v1/tasks/{task_id}/log", headers=user.headers)
    assert got.content == b"".join(parts)
    assert got.headers["x-log-digest"] == chain(*parts)
    assert got.headers["x-log-truncated"] == "false"
    with runtime.sessions() as session:
        stored = session.scalars(select(TaskLogChunk.ciphertext)).all()
    assert len(stored) == 3
    assert all(b"secret-sauce" not in blob and b"linking" not in blob for blob in stored)


def test_free_keeps_the_last_10_kb_and_a_digest_of_everything(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    user = make_user()
    task_id = start(client, user)
    parts = [bytes([65 + i]) * 9000 for i in range(3)]  # 27,000 bytes
    for part in parts:
        result = append(client, user, task_id, part)
    assert (result["bytes_total"], result["bytes_kept"]) == (27_000, 10_240)
    got = client.get(f"/v1/tasks/{task_id}/log", headers=user.headers)
    assert got.content == b"".join(parts)[-10_240:]
    assert got.headers["x-log-truncated"] == "true"
    assert got.headers["x-log-bytes-total"] == "27000"
    assert got.headers["x-log-digest"] == chain(*parts)


def test_the_whole_outputs_sha256_is_checked_when_held_and_kept_when_not(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    pro, free = make_user(plan="pro"), make_user()
    parts = [bytes([65 + i]) * 9000 for i in range(3)]  # 27,000 bytes
    whole = {"sha256": hashlib.sha256(b"".join(parts)).hexdigest(), "bytes": 27_000}
    held, trimmed = start(client, pro), start(client, free)
    for part in parts:
        append(client, pro, held, part)
        append(client, free, trimmed, part)

    def put(user: Account, task_id: str, body: dict[str, object]) -> Any:
        return client.put(f"/v1/tasks/{task_id}/log/digest", json=body, headers=user.headers)

    # The server holds every byte of the pro log: a wrong digest is refused, the right one kept.
    wrong = {**whole, "sha256": hashlib.sha256(b"something else").hexdigest()}
    refused = put(pro, held, wrong)
    assert refused.status_code == 422
    assert "does not match the 27000 bytes" in refused.json()["error"]["message"]
    assert put(pro, held, whole).json() == {**whole, "verified": True}
    # Free keeps 10 KB: the digest is all that is left of the rest, and cannot be checked.
    assert put(free, trimmed, whole).json() == {**whole, "verified": False}
    for user, task_id in ((pro, held), (free, trimmed)):
        got = client.get(f"/v1/tasks/{task_id}/log", headers=user.headers)
        assert got.headers["x-output-sha256"] == whole["sha256"]
        assert got.headers["x-output-bytes"] == "27000"
    assert put(free, held, whole).status_code == 404  # someone else's task
    assert put(pro, held, {"sha256": "XYZ", "bytes": 1}).status_code == 422
    assert put(pro, held, {**whole, "bytes": -1}).status_code == 422


@pytest.fixture
def rotated(runtime: Runtime) -> Iterator[Callable[[tuple[str, ...]], TestClient]]:
    """Clients of the same database under other key settings."""
    opened: list[TestClient] = []

    def make(keys: tuple[str, ...]) -> TestClient:
        other = Runtime(
            settings=runtime.settings.replace(log_keys=keys),
            engine=runtime.engine,
            sessions=runtime.sessions,
            waker=runtime.waker,
        )
        client = TestClient(create_app(runtime=other))
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def test_keys_rotate_and_tampering_is_detected(
    client: TestClient,
    runtime: Runtime,
    make_user: Callable[..., Account],
    rotated: Callable[[tuple[str, ...]], TestClient],
) -> None:
    user = make_user(plan="pro")
    task_id = start(client, user)
    append(client, user, task_id, b"old key\n")
    old_key = runtime.settings.log_keys[0]
    after = rotated((new_key("k2"), old_key))
    append(after, user, task_id, b"new key\n")
    assert after.get(f"/v1/tasks/{task_id}/log", headers=user.headers).content == (
        b"old key\nnew key\n"
    )
    with runtime.sessions() as session:
        assert session.scalars(select(TaskLogChunk.key_id).order_by(TaskLogChunk.seq)).all() == [
            "k1",
            "k2",
        ]
    forgot = rotated((new_key("k2"),))
    lost = forgot.get(f"/v1/tasks/{task_id}/log", headers=user.headers)
    assert lost.status_code == 500
    assert lost.json()["error"]["code"] == "log_unreadable"
    with runtime.sessions.begin() as session:
        blob = session.scalars(select(TaskLogChunk.ciphertext).where(TaskLogChunk.seq == 1)).one()
        session.execute(
            update(TaskLogChunk)
            .where(TaskLogChunk.seq == 1)
            .values(ciphertext=bytes([blob[0] ^ 1]) + blob[1:])
        )
    tampered = after.get(f"/v1/tasks/{task_id}/log", headers=user.headers)
    assert "failed authentication" in tampered.json()["error"]["message"]


def test_output_matching_a_rule_notifies_once_per_chunk(
    client: TestClient, receiver: Receiver, make_user: Callable[..., Account]
) -> None:
    user = make_user(plan="pro")
    hook = client.post(
        "/v1/channels",
        json={
            "type": "webhook",
            "config": {"url": receiver.url},
            "rules": {"on": ["match"], "regex": r"ERROR \d+"},
        },
        headers=user.headers,
    ).json()
    task_id = start(client, user)
    quiet = append(client, user, task_id, b"all good\nstill fine\n")
    assert quiet["notifications"] == []
    loud = append(client, user, task_id, b"step 1\nERROR 42: disk full\nERROR 43\n")
    assert [n["status"] for n in loud["notifications"]] == ["pending"]  # type: ignore[union-attr]
    exit_only = client.post(
        "/v1/tasks", json={"cmd": "make", "notify_on": "exit"}, headers=user.headers
    ).json()["task_id"]
    assert append(client, user, exit_only, b"ERROR 1\n")["notifications"] == []
    [call] = receiver.wait(1)
    payload = Webhook(hook["config"]["secret"]).verify(call.body, call.headers)
    assert payload["type"] == "task.match"
    assert payload["data"]["match"] == "ERROR 42: disk full"
    assert payload["data"]["task_id"] == task_id


def test_log_errors_are_clear(
    client: TestClient, make_user: Callable[..., Account], rotated: Callable[..., TestClient]
) -> None:
    user = make_user()
    task_id = start(client, user)
    headers = {**user.headers, "content-type": "application/octet-stream"}
    assert client.post("/v1/tasks/nope/log", content=b"x", headers=headers).status_code == 404
    assert client.post(f"/v1/tasks/{task_id}/log", content=b"", headers=headers).status_code == 422
    big = client.post(f"/v1/tasks/{task_id}/log", content=b"x" * 2_000_000, headers=headers)
    assert big.status_code == 413
    other = make_user()
    assert client.get(f"/v1/tasks/{task_id}/log", headers=other.headers).status_code == 404
    unconfigured = rotated(())
    refused = unconfigured.post(f"/v1/tasks/{task_id}/log", content=b"x", headers=headers)
    assert refused.status_code == 503


def test_a_catastrophic_pattern_cannot_stall_ingest(
    client: TestClient, make_user: Callable[..., Account]
) -> None:
    import time

    user = make_user(plan="pro")
    client.post(
        "/v1/channels",
        json={
            "type": "webhook",
            "config": {"url": "https://hooks.example.com/x"},
            "rules": {"on": ["match"], "regex": "(a|aa)+$"},
        },
        headers=user.headers,
    )
    task_id = start(client, user)
    started = time.monotonic()
    result = append(client, user, task_id, b"a" * 4000 + b"!\n")
    assert time.monotonic() - started < 5  # unbounded backtracking would take minutes
    assert result["notifications"] == []
