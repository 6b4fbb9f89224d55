"""Channel plugins on the server, through the real app and worker (SQLite and PostgreSQL): the
example package's ``example-hook`` channel enabled by name and used like a built-in one; plugins
that are not installed, do not import, or claim a built-in type are left out with one line and
the server runs; a send that raises is a dead letter and the worker goes on."""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cloud_kit import Account, Mailbox, Receiver, wait_for
from fastapi.testclient import TestClient
from plugin_kit import install
from web_kit import browser_of, form_token, sign_in

from claude_notify.cloud.server.channels import plugins as channel_plugins
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import TaskEvent

ENABLED = ("example-hook", "explody", "broken", "nosuch", "email")


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(tmp_path_factory.mktemp("plugins"))


@pytest.fixture
def settings(settings: Settings, plugin_dir: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.syspath_prepend(str(plugin_dir))
    importlib.invalidate_caches()
    channel_plugins._enabled.cache_clear()  # what earlier tests loaded without the directory
    yield settings.replace(channel_plugins=ENABLED)
    channel_plugins._enabled.cache_clear()


def _add(client: TestClient, user: Account, kind: str, config: dict[str, object]) -> object:
    return client.post("/v1/channels", headers=user.headers,
                       json={"type": kind, "config": config, "rules": {"on": ["finished"]}})


def test_an_enabled_plugin_channel_is_checked_added_and_delivers_like_a_built_in_one(
    client: TestClient, receiver: Receiver, make_user: Callable[..., Account],
) -> None:
    pro, free = make_user(plan="pro"), make_user()
    bad = _add(client, pro, "example-hook", {"address": "x"})
    assert bad.status_code == 422 and "config takes exactly one key, url" in bad.text  # type: ignore[attr-defined]
    refused = _add(client, free, "example-hook", {"url": receiver.url})
    assert refused.status_code == 403 and "needs pro" in refused.text  # type: ignore[attr-defined]
    made = _add(client, pro, "Example-Hook", {"url": receiver.url})
    assert made.status_code == 201, made.text  # type: ignore[attr-defined]
    assert made.json()["verified"] is True  # type: ignore[attr-defined]

    event = TaskEvent.from_dict({"type": "finished", "source": "run", "task_id": "t-plug",
                                 "machine_id": "m-1", "status": "failure", "exit_code": 2,
                                 "command": "make <deploy>"}).to_dict()
    assert client.post("/v1/events", json=event, headers=pro.headers).status_code == 202
    [got] = receiver.wait(1, timeout=30)
    body = json.loads(got.body)
    assert body["kind"] == "event" and "make <deploy>" in body["text"]


def test_plugins_that_cannot_be_used_are_left_out_with_one_line_each(
    client: TestClient, make_user: Callable[..., Account], settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel_plugins._enabled.cache_clear()
    with caplog.at_level(logging.ERROR, logger="claude_notify.server"):
        problems = channel_plugins.problems(settings.channel_plugins)
    assert set(problems) == {"broken", "nosuch", "email"}
    assert "cannot be loaded: RuntimeError: this plugin is broken on purpose" in problems["broken"]
    assert problems["nosuch"] == "no server channel plugin named 'nosuch' is installed"
    assert "built-in channel type" in problems["email"]
    assert len([r for r in caplog.records if "is not enabled" in r.getMessage()]) == 3
    pro = make_user(plan="pro")
    for kind in ("broken", "nosuch"):
        answer = _add(client, pro, kind, {"url": "https://example.com"})
        assert answer.status_code == 422 and "unknown channel type" in answer.text  # type: ignore[attr-defined]
    assert client.get("/healthz").status_code == 200


def test_a_plugin_send_that_raises_is_a_dead_letter_and_the_worker_goes_on(
    client: TestClient, receiver: Receiver, make_user: Callable[..., Account],
) -> None:
    pro = make_user(plan="pro")
    boom = _add(client, pro, "explody", {"anything": 1})
    assert boom.status_code == 201, boom.text  # type: ignore[attr-defined]
    queued = client.post(f"/v1/channels/{boom.json()['id']}/test", headers=pro.headers)  # type: ignore[attr-defined]
    assert queued.status_code == 202
    notification = queued.json()["notification_id"]

    def dead() -> object:
        row = client.get(f"/v1/notifications/{notification}", headers=pro.headers).json()
        return row if row["status"] == "dead" else None

    row = wait_for(dead, timeout=60, what="the exploding send to be dead-lettered")
    assert "internal error in the explody adapter (RuntimeError)" in str(row)
    assert "t0ken" not in str(row)  # the exception's text is not shown: it may hold secrets
    hook = _add(client, pro, "example-hook", {"url": receiver.url})
    assert client.post(f"/v1/channels/{hook.json()['id']}/test",  # type: ignore[attr-defined]
                       headers=pro.headers).status_code == 202
    receiver.wait(1, timeout=30)  # the worker still delivers


def test_the_web_app_offers_an_enabled_plugin_and_adds_it_by_its_form_field(
    client: TestClient, smtp_server: Mailbox, receiver: Receiver,
    make_user: Callable[..., Account],
) -> None:
    pro = make_user(plan="pro")
    b = browser_of(client)
    sign_in(b, smtp_server, pro.email)
    page = b.get("/app/channels").text
    assert 'value="example-hook"' in page and 'value="broken"' not in page
    added = b.post("/app/channels", data={"csrf": form_token(page), "type": "example-hook",
                                          "target": receiver.url, "on": ["finished"]})
    assert added.status_code == 303, added.text
    shown = b.get(added.headers["location"]).text
    assert "<h1>example-hook</h1>" in shown and "Send a test" in shown
