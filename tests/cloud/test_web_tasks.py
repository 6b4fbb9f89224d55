"""The tasks page's filters and its first-steps checklist, through the real app and worker on
SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from cloud_kit import Account, Mailbox, Receiver, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import update
from web_kit import browser_of, form_token, sign_in

from claude_notify.cloud.server.db.models import Task
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.events import TaskEvent, utcnow


def _task(client: TestClient, user: Account, **fields: Any) -> str:
    key = uuid.uuid4().hex
    body = TaskEvent.from_dict({"type": "finished", "source": "run", "task_id": key,
                                "machine_id": "m-1", "status": "success", "exit_code": 0,
                                "command": "make", **fields}).to_dict()
    assert client.post("/v1/events", json=body, headers=user.headers).status_code == 202
    return key


def _keys(page: str) -> set[str]:
    return set(re.findall(r'href="/app/t/([0-9a-f]{32})"', page))


def test_tasks_filter_by_source_and_age_and_older_pages_keep_the_filters(
    client: TestClient, smtp_server: Mailbox, runtime: Runtime,
    make_user: Callable[..., Account],
) -> None:
    user = make_user()
    runs = {_task(client, user, source="run") for _ in range(52)}
    claude = _task(client, user, source="claude-code", status="needs_input", type="needs_input")
    watched = _task(client, user, source="watch")
    with runtime.sessions.begin() as db:  # an old task: stored nine days ago
        db.execute(update(Task).where(Task.key == watched)
                   .values(created_at=utcnow() - timedelta(days=9)))
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)
    assert _keys(b.get("/app/tasks", params={"source": "claude-code"}).text) == {claude}
    assert _keys(b.get("/app/tasks", params={"source": "watch"}).text) == {watched}
    assert watched not in _keys(b.get("/app/tasks", params={"within": "7d",
                                                           "source": "watch"}).text)
    assert _keys(b.get("/app/tasks", params={"source": "watch", "within": "30d"}).text) == {
        watched}
    first = b.get("/app/tasks", params={"source": "run", "within": "1d"}).text
    older = re.search(r'rel="next" href="([^"]+)"', first)
    assert older is not None
    url = older.group(1).replace("&amp;", "&")
    assert "source=run" in url and "within=1d" in url
    assert _keys(first) | _keys(b.get(url).text) == runs
    unknown = b.get("/app/tasks", params={"source": "<script>", "within": "forever"})
    assert unknown.status_code == 200 and "<script>" not in unknown.text
    assert len(_keys(unknown.text)) == 50  # an unknown filter value is no filter


def test_the_checklist_follows_the_first_steps_and_goes_once_they_are_done(
    client: TestClient, smtp_server: Mailbox, receiver: Receiver,
    make_user: Callable[..., Account],
) -> None:
    user = make_user(plan="pro")
    b = browser_of(client)
    sign_in(b, smtp_server, user.email)

    def ticks() -> int:
        return b.get("/app/tasks", params={"part": "listing"}).text.count("✓ done")

    page = b.get("/app/tasks").text
    assert "First steps" in page and f"--email {user.email}" in page and ticks() == 0
    assert client.get("/v1/account", headers=user.headers).status_code == 200  # a CLI
    # signed in with the account token and used it
    assert ticks() == 2
    _task(client, user)
    assert ticks() == 3 and "First steps" in b.get("/app/tasks").text
    token = form_token(b.get("/app/channels").text)
    added = b.post("/app/channels", data={"csrf": token, "type": "webhook",
                                          "target": receiver.url, "on": ["finished"]})
    channel = added.headers["location"]
    assert b.post(f"{channel}/test", data={"csrf": token}).status_code == 202
    wait_for(lambda: "First steps" not in b.get("/app/tasks").text,
             what="the checklist to go once a channel delivered its test")
    assert "First steps" not in b.get("/app/tasks", params={"part": "listing"}).text
