"""``/metrics`` tells operators what happened: events, outcomes, latency, rejections, depth."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cloud_kit import Account, Receiver, wait_for
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from claude_notify.cloud.server import auth
from claude_notify.events import TaskEvent


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_follow_a_delivery_and_a_rejection(
    client: TestClient, receiver: Receiver, make_user: Callable[..., Account]
) -> None:
    pro, free = make_user(plan="pro"), make_user(plan="pro")
    for user in (pro, free):
        client.post(
            "/v1/channels",
            json={"type": "webhook", "config": {"url": receiver.url}},
            headers=user.headers,
        )
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.sessions.begin() as session:
        auth.set_plan(session, free.email, "free")  # a free plan refuses a webhook it kept
    event = TaskEvent(type="finished", source="run", task_id="t", machine_id="m", status="success")
    client.post("/v1/events", json=event.to_dict(), headers=pro.headers)
    client.post("/v1/events", json=event.to_dict(), headers=pro.headers)  # a replay
    client.post("/v1/events", json=event.to_dict(), headers=free.headers)
    receiver.wait(1)
    sent = ("claude_notify_notifications_total", (("channel", "webhook"), ("outcome", "sent")))
    got = wait_for(lambda: (m := samples(client)).get(sent) == 1.0 and m, what="sent counter")
    assert got[("claude_notify_events_received_total", (("type", "finished"),))] == 2.0
    assert got[("claude_notify_events_duplicate_total", ())] == 1.0
    rejected = (
        "claude_notify_notifications_total",
        (("channel", "webhook"), ("outcome", "rejected")),
    )
    assert got[rejected] == 1.0
    assert got[("claude_notify_quota_rejections_total", (("channel", "webhook"),))] == 1.0
    latency = ("claude_notify_delivery_latency_seconds_count", (("channel", "webhook"),))
    assert got[latency] == 1.0
    assert got[("claude_notify_queue_depth", (("status", "pending"),))] == 0.0
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_access_logs_are_structured_and_keep_link_secrets_out(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import logging

    from claude_notify.cloud.server.logsetup import JsonFormatter

    with caplog.at_level(logging.INFO, logger="claude_notify.server.access"):
        client.get("/v1/verify", params={"token": "one-time-secret"})
    [record] = [r for r in caplog.records if r.name == "claude_notify.server.access"]
    line = json.loads(JsonFormatter().format(record))
    assert (line["method"], line["path"], line["status"]) == ("GET", "/v1/verify", 404)
    assert "one-time-secret" not in json.dumps(line)
