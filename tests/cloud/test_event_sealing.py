"""Command output in stored events (tails, Claude's messages, matched lines) is encrypted at
rest with the log keys, like the logs; everything that reads events gets it back in clear.

Checked on the raw rows of SQLite and PostgreSQL, through the real app and its worker.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cloud_kit import Account, Receiver
from fastapi.testclient import TestClient
from sqlalchemy import Uuid, column, select, table, text, update

from claude_notify.cloud.server.db.models import Event
from claude_notify.cloud.server.db.types import JSONType
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import TaskEvent

TAIL = "collected 12 items\nFAILED tests/test_pay.py::test_refund - card 4242-OUTPUT"
MESSAGE = "Claude: I rewrote the refund handler; CLAUDE-MESSAGE-TEXT"
TITLE = "Claude needs your permission to use Bash"


def _event(task_id: str = "t-1", **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "type": "finished", "source": "claude-code", "task_id": task_id, "machine_id": "m-1",
        "status": "failure", "exit_code": 1, "command": "make test", "tail": TAIL,
        "message": MESSAGE, "title": TITLE, **fields}
    return TaskEvent(**values).to_dict()


def _webhook(client: TestClient, user: Account, url: str) -> None:
    made = client.post("/v1/channels", headers=user.headers, json={
        "type": "webhook", "config": {"url": url}, "rules": {"on": ["finished", "match"]}})
    assert made.status_code == 201, made.text


def _raw_payloads(runtime: Runtime) -> list[str]:
    """The payload column as the database holds it, bypassing the model's column type."""
    with runtime.engine.connect() as conn:
        return [str(v) for v in conn.execute(text("SELECT payload FROM events")).scalars()]


def test_output_is_not_in_the_stored_row_and_deliveries_still_carry_it(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account], receiver: Receiver,
) -> None:
    user = make_user(plan="pro")
    _webhook(client, user, receiver.url)
    sent = client.post("/v1/events", json=_event(), headers=user.headers)
    assert sent.status_code == 202, sent.text
    matched = _event("t-2", type="match", match="ERROR: MATCHED-LINE-OUTPUT")
    assert client.post("/v1/events", json=matched, headers=user.headers).status_code == 202

    bodies = [json.loads(r.body) for r in receiver.wait(2)]
    events = {b["data"]["type"]: b["data"] for b in bodies}
    assert events["finished"]["tail"] == TAIL  # the rendering path decrypts
    assert events["finished"]["message"] == MESSAGE and events["finished"]["title"] == TITLE
    assert events["match"]["match"] == "ERROR: MATCHED-LINE-OUTPUT"

    raw = _raw_payloads(runtime)
    assert len(raw) == 2
    for stored in raw:
        for secret in ("4242-OUTPUT", "CLAUDE-MESSAGE-TEXT", "permission to use", "MATCHED-LINE"):
            assert secret not in stored
        assert "make test" in stored  # the rest of the event stays queryable
    with runtime.sessions() as session:  # the model reads it back whole
        payloads = session.scalars(select(Event.payload)).all()
    assert {p.get("tail") for p in payloads} == {TAIL}
    assert {p["event_id"] for p in payloads} == {_id(bodies, "finished"), _id(bodies, "match")}


def _id(bodies: list[dict[str, Any]], kind: str) -> str:
    return next(str(b["data"]["event_id"]) for b in bodies
                if b["data"]["type"] == kind)


def test_rows_stored_in_clear_before_the_upgrade_still_read(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
) -> None:
    user = make_user(plan="pro")
    assert client.post("/v1/events", json=_event(), headers=user.headers).status_code == 202
    with runtime.sessions() as session:
        row_id = session.scalars(select(Event.id)).one()
    plain = table("events", column("id", Uuid), column("payload", JSONType))
    old = {**_event(), "tail": "an old tail, stored in clear"}
    with runtime.engine.begin() as conn:  # as a server before this change wrote it
        conn.execute(update(plain).where(plain.c.id == row_id).values(payload=old))
    assert "an old tail" in _raw_payloads(runtime)[0]
    with runtime.sessions() as session:
        assert session.get(Event, row_id).payload == old  # type: ignore[union-attr]


def test_a_sealed_payload_moved_to_another_event_does_not_open(
    client: TestClient, runtime: Runtime, make_user: Callable[..., Account],
) -> None:
    """The event id is bound in: output copied onto another user's event is not revealed."""
    owner, other = make_user(plan="pro"), make_user(plan="pro")
    original = _event()
    assert client.post("/v1/events", json=original, headers=owner.headers).status_code == 202
    decoy = {**_event(), "tail": "", "message": None, "title": None, "event_id": "decoy-1"}
    assert client.post("/v1/events", json=decoy, headers=other.headers).status_code == 202
    with runtime.engine.connect() as conn:
        stolen = conn.execute(text("SELECT payload FROM events WHERE event_id = :e"),
                              {"e": original["event_id"]}).scalar_one()
    stolen = json.loads(stolen) if isinstance(stolen, str) else stolen
    plain = table("events", column("event_id"), column("payload", JSONType))
    with runtime.engine.begin() as conn:
        conn.execute(update(plain).where(plain.c.event_id == "decoy-1")
                     .values(payload={**stolen, "event_id": "decoy-1"}))
    with runtime.sessions() as session:
        payload = session.scalars(select(Event.payload).where(Event.event_id == "decoy-1")).one()
    assert "4242-OUTPUT" not in json.dumps(payload)
    assert payload["event_id"] == "decoy-1"  # the row still reads, without the output


def test_sealed_relay_text_opens_with_its_key_only_and_clear_text_reads_as_it_is() -> None:
    """The relay's detail and audit reason: a lost key or a tampered value reads as a note,
    never as the sealed string or a traceback; rows from before sealing read as they are."""
    from claude_notify.cloud.server.logcrypt import LogCipher, new_key, open_text, seal_text

    old_key = new_key("k1")
    cipher = LogCipher([old_key])
    sealed = seal_text("claude: SECRET-ANSWER", cipher)
    assert "SECRET-ANSWER" not in sealed and open_text(sealed, cipher) == "claude: SECRET-ANSWER"
    rotated = LogCipher([new_key("k2"), old_key])
    assert open_text(sealed, rotated) == "claude: SECRET-ANSWER"  # an older key still opens
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    for unreadable in (open_text(sealed, None), open_text(sealed, LogCipher([new_key("k1")])),
                       open_text(tampered, cipher), open_text("sealed:v1:garbage", cipher)):
        assert unreadable.startswith("(stored sealed") and "SECRET" not in unreadable
    assert open_text("exit code 2", cipher) == "exit code 2"
